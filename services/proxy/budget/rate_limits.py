"""rpm_limit, tpm_limit and max_parallel_requests as leased budgets. Plain code.

A key's rpm_limit is a budget of `rpm_limit` requests per minute, its tpm_limit one of `tpm_limit`
tokens, its max_parallel_requests one of that many slots (no window: a slot comes back when its
call ends); each is an Account with a lease from the same authority as money budgets (leases.py),
so any worker can use a key's whole limit. The minute is a window of 60 s counted from the epoch,
in event time, as LiteLLM counts per minute. A call reserves 1 on each: a request is 1 request; its
tokens are known only when it ends (LiteLLM's tpm check, too, looks at the tokens of calls already
counted), so it settles at its real tokens and one call may take the minute past the limit; a slot
settles at 0 (nothing stays spent)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from services.proxy.auth.keys import CallerIdentity
from services.proxy.budget.core import REQUESTS, SLOTS, TOKENS, Account, BudgetSpec
from services.proxy.errors import ProxyError

ONE = Decimal(1)
MINUTE = timedelta(minutes=1)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
KINDS = {REQUESTS: "rpm", TOKENS: "tpm", SLOTS: "parallel"}  # the entity kind of each measure's leases


class RateLimited(ProxyError):
    status = 429

    def __init__(self, message: str) -> None:
        super().__init__(message, type="rate_limit_error", code="429")


def rate_specs(caller: CallerIdentity) -> tuple[tuple[str, BudgetSpec], ...]:
    """(measure, spec) of each rate limit the key has: parsed once per identity by the guard."""
    specs = []
    for measure, limit in ((REQUESTS, caller.rpm_limit), (TOKENS, caller.tpm_limit)):
        if limit is not None:
            specs.append((measure, BudgetSpec(KINDS[measure], caller.api_key_hash, Decimal(limit), anchor=EPOCH, duration=MINUTE)))
    if caller.max_parallel_requests is not None:
        specs.append((SLOTS, BudgetSpec(KINDS[SLOTS], caller.api_key_hash, Decimal(caller.max_parallel_requests))))
    return tuple(specs)


def rate_limited(measure: str, spec: BudgetSpec, account: Account) -> RateLimited:
    limit = int(spec.max_budget or 0)
    key = spec.entity_id[:12]
    if measure == SLOTS:
        return RateLimited(f"Max parallel request limit reached. Hit limit for api_key: {key}... "
                           f"max_parallel_requests: {limit}, current parallel requests on this worker: {account.inflight}")
    if measure == REQUESTS:
        return RateLimited(f"Rate limit exceeded for api_key: {key}... rpm_limit: {limit}, "
                           f"no request of this minute's limit is left (this worker sent {account.inflight + int(account.own)})")
    return RateLimited(f"Rate limit exceeded for api_key: {key}... tpm_limit: {limit}, "
                       f"no token of this minute's limit is left (this worker's calls used {int(account.own)})")
