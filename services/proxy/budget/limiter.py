"""max_parallel_requests per key, in this worker process. Plain code.

Each of N = replicas x workers processes allows ceil(limit / N) calls of a key in flight, so across
the deployment a key has at most N x ceil(limit / N) <= limit + N - 1 (docs/budgets.md). rpm_limit
and tpm_limit are leased budgets instead (rate_limits.py)."""

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
    __slots__ = ("inflight",)

    def __init__(self) -> None:
        self.inflight = 0


class KeyLimiter:
    def __init__(self, replicas: int = 1) -> None:
        self.replicas = max(1, replicas)
        self._counters: dict[str, _Counter] = {}
        self.held = 0  # requests admitted and not yet released, over every key

    def acquire(self, key_hash: str, parallel: int) -> Slot:
        """Take one of the key's parallel slots here, or raise RateLimited."""
        counter = self._counters.get(key_hash)
        if counter is None:
            counter = self._counters[key_hash] = _Counter()
        if counter.inflight >= per_replica(parallel, self.replicas):
            raise RateLimited(f"Max parallel request limit reached. Hit limit for api_key: {key_hash[:12]}... "
                              f"max_parallel_requests: {parallel}, current parallel requests on this worker: {counter.inflight}")
        counter.inflight += 1
        self.held += 1
        return Slot(counter)

    def release(self, slot: Slot) -> bool:
        """Give the slot back. Returns False, changing nothing, for a slot already released (the
        caller reports it as a bug)."""
        if slot.released:
            return False
        slot.released = True
        slot.counter.inflight -= 1
        self.held -= 1
        return True
