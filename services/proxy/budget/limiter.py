"""rpm_limit, tpm_limit and max_parallel_requests per key, on this replica. Plain code.

Counting is per replica in fixed one-minute windows (as LiteLLM's limiter counts per minute). Each
of N replicas allows ceil(limit / N), so across the deployment a key gets at most
N x ceil(limit / N) <= limit + N - 1 requests (or tokens' worth of admissions) per minute; see
docs/budgets.md. tpm is checked before the call against the tokens of calls already finished in
the minute (a call's size is known only afterwards), so one call may take the minute past it."""

from __future__ import annotations

from services.proxy.errors import ProxyError


class RateLimited(ProxyError):
    status = 429

    def __init__(self, message: str) -> None:
        super().__init__(message, type="rate_limit_error", code="429")


def per_replica(limit: int, replicas: int) -> int:
    return -(-limit // replicas)  # ceil


class Slot:
    """One admitted request's place in its key's counters: released exactly once."""

    __slots__ = ("counter", "released")

    def __init__(self, counter: _Counter) -> None:
        self.counter = counter
        self.released = False


class _Counter:
    __slots__ = ("minute", "requests", "tokens", "inflight")

    def __init__(self) -> None:
        self.minute = -1
        self.requests = 0
        self.tokens = 0
        self.inflight = 0


class KeyLimiter:
    def __init__(self, replicas: int = 1) -> None:
        self.replicas = max(1, replicas)
        self._counters: dict[str, _Counter] = {}
        self.held = 0  # requests admitted and not yet released, over every key

    def acquire(self, key_hash: str, rpm: int | None, tpm: int | None, parallel: int | None, now: float) -> Slot | None:
        """Count one request, or raise RateLimited. Returns the slot for release(), or None when
        the key has no limit here."""
        if rpm is None and tpm is None and parallel is None:
            return None
        counter = self._counters.get(key_hash)
        if counter is None:
            counter = self._counters[key_hash] = _Counter()
        minute = int(now // 60)
        if counter.minute != minute:
            counter.minute, counter.requests, counter.tokens = minute, 0, 0
        if parallel is not None and counter.inflight >= per_replica(parallel, self.replicas):
            raise RateLimited(f"Max parallel request limit reached. Hit limit for api_key: {key_hash[:12]}... "
                              f"max_parallel_requests: {parallel}, current parallel requests on this replica: {counter.inflight}")
        if rpm is not None and counter.requests >= per_replica(rpm, self.replicas):
            raise RateLimited(f"Rate limit exceeded for api_key: {key_hash[:12]}... rpm_limit: {rpm}, "
                              f"requests this minute on this replica: {counter.requests} (limit here: {per_replica(rpm, self.replicas)})")
        if tpm is not None and counter.tokens >= per_replica(tpm, self.replicas):
            raise RateLimited(f"Rate limit exceeded for api_key: {key_hash[:12]}... tpm_limit: {tpm}, "
                              f"tokens this minute on this replica: {counter.tokens} (limit here: {per_replica(tpm, self.replicas)})")
        counter.requests += 1
        counter.inflight += 1
        self.held += 1
        return Slot(counter)

    def release(self, slot: Slot, tokens: int, now: float) -> bool:
        """Give the slot back and count the call's tokens in the current minute. Returns False,
        changing nothing, for a slot already released (the caller reports it as a bug)."""
        if slot.released:
            return False
        slot.released = True
        counter = slot.counter
        counter.inflight -= 1
        self.held -= 1
        if counter.minute == int(now // 60):
            counter.tokens += tokens
        return True
