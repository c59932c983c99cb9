"""rpm_limit and tpm_limit as leased budgets of one-minute windows. Plain code.

A key's rpm_limit is a budget of `rpm_limit` requests per minute, its tpm_limit one of `tpm_limit`
tokens; each is an Account with a lease from the same authority as money budgets (leases.py), so
any worker can use a key's whole limit. The minute is a window of 60 s counted from the epoch, in
event time, as LiteLLM counts per minute. A call reserves 1 on each: a request is 1 request; its
tokens are known only when it ends (LiteLLM's tpm check, too, looks at the tokens of calls already
counted), so it settles at its real tokens and one call may take the minute past the limit."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from services.proxy.auth.keys import CallerIdentity
from services.proxy.budget.core import REQUESTS, TOKENS, Account, BudgetSpec
from services.proxy.budget.limiter import RateLimited

ONE = Decimal(1)
MINUTE = timedelta(minutes=1)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
KINDS = {REQUESTS: "rpm", TOKENS: "tpm"}  # the entity kind of each measure's leases


def rate_specs(caller: CallerIdentity) -> tuple[tuple[str, BudgetSpec], ...]:
    """(measure, spec) of each rate limit the key has: parsed once per identity by the guard."""
    specs = []
    for measure, limit in ((REQUESTS, caller.rpm_limit), (TOKENS, caller.tpm_limit)):
        if limit is not None:
            specs.append((measure, BudgetSpec(KINDS[measure], caller.api_key_hash, Decimal(limit), anchor=EPOCH, duration=MINUTE)))
    return tuple(specs)


def rate_limited(measure: str, spec: BudgetSpec, account: Account) -> RateLimited:
    limit = int(spec.max_budget or 0)
    key = spec.entity_id[:12]
    if measure == REQUESTS:
        return RateLimited(f"Rate limit exceeded for api_key: {key}... rpm_limit: {limit}, "
                           f"no request of this minute's limit is left (this worker sent {account.inflight + int(account.own)})")
    return RateLimited(f"Rate limit exceeded for api_key: {key}... tpm_limit: {limit}, "
                       f"no token of this minute's limit is left (this worker's calls used {int(account.own)})")
