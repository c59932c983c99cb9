"""rpm_limit, tpm_limit and max_parallel_requests as leased budgets. Plain code.

Keys, teams, internal users, customers and organisations may each have them. A key's rpm_limit is a budget of `rpm_limit` requests per minute, its tpm_limit one of `tpm_limit`
tokens, its max_parallel_requests one of that many slots (no window: a slot comes back when its
call ends); each is an Account with a lease from the same authority as money budgets (leases.py),
so any worker can use a key's whole limit. The minute is a window of 60 s counted from the epoch,
in event time, as LiteLLM counts per minute. A call reserves 1 on each: a request is 1 request; its
tokens are known only when it ends (LiteLLM's tpm check, too, looks at the tokens of calls already
counted), so it settles at its real tokens and one call may take the minute past the limit; a slot
settles at 0 (nothing stays spent)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from services.proxy.auth.keys import CallerIdentity
from services.proxy.budget.core import REQUESTS, SLOTS, TOKENS, Account, BudgetSpec
from services.proxy.errors import ProxyError

ONE = Decimal(1)
MINUTE = timedelta(minutes=1)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
KINDS = {REQUESTS: "rpm", TOKENS: "tpm", SLOTS: "parallel"}  # the entity kind of each measure's leases
# LiteLLM's rate limiter names the entity whose limit was hit by these descriptor keys, and the limit
# by these types.
DESCRIPTORS = {"team": "team", "user": "user", "customer": "end_user", "organization": "organization",
               "model_per_key": "model_per_key"}
LIMIT_TYPES = {REQUESTS: "requests", TOKENS: "tokens", SLOTS: "max_parallel_requests"}
RateSpecs = tuple[tuple[str, BudgetSpec], ...]


class RateLimited(ProxyError):
    status = 429

    def __init__(self, message: str) -> None:
        super().__init__(message, type="rate_limit_error", code="429")


def rate_specs(caller: CallerIdentity) -> RateSpecs:
    """(measure, spec) of each rate limit the key has: parsed once per identity by the guard."""
    return _specs(caller.api_key_hash, caller.rpm_limit, caller.tpm_limit, caller.max_parallel_requests)


def entity_rate_specs(kind: str, entity_id: str, state: Mapping[str, Any]) -> RateSpecs:
    """The rate limits of a team, internal user, customer or organisation, from its state: parsed
    once when its EntityChanged is applied. Their leases are named `<kind>:<id>` (a key's by its
    hash alone), so no two entities share one."""
    if kind not in DESCRIPTORS:
        return ()
    return _specs(f"{kind}:{entity_id}", _limit(state.get("rpm_limit")), _limit(state.get("tpm_limit")),
                  _limit(state.get("max_parallel_requests")))


def model_rate_specs(api_key_hash: str, state: Mapping[str, Any]) -> dict[str, RateSpecs]:
    """A key's `model_rpm_limit` / `model_tpm_limit` ({model: limit}, as a column or in its metadata,
    where LiteLLM reads them too): model -> its specs, leased as `model_per_key:<hash>:<model>`."""
    metadata = state.get("metadata") if isinstance(state.get("metadata"), Mapping) else {}
    per_model: dict[str, list[int | None]] = {}
    for position, name in ((0, "model_rpm_limit"), (1, "model_tpm_limit")):
        limits = state.get(name) or metadata.get(name)
        if isinstance(limits, Mapping):
            for model, limit in limits.items():
                per_model.setdefault(str(model), [None, None])[position] = _limit(limit)
    specs = {model: _specs(f"model_per_key:{api_key_hash}:{model}", rpm, tpm, None) for model, (rpm, tpm) in per_model.items()}
    return {model: found for model, found in specs.items() if found}


def _specs(lease_id: str, rpm: int | None, tpm: int | None, parallel: int | None) -> RateSpecs:
    specs = []
    for measure, limit in ((REQUESTS, rpm), (TOKENS, tpm)):
        if limit is not None:
            specs.append((measure, BudgetSpec(KINDS[measure], lease_id, Decimal(limit), anchor=EPOCH, duration=MINUTE)))
    if parallel is not None:
        specs.append((SLOTS, BudgetSpec(KINDS[SLOTS], lease_id, Decimal(parallel))))
    return tuple(specs)


def _limit(value: Any) -> int | None:
    """A stored limit as a count; the admin routes refuse anything else, so this only guards old states."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    try:
        limit = int(value)
    except ValueError:
        return None
    return limit if limit >= 0 else None


def rate_limited(measure: str, spec: BudgetSpec, account: Account, now: datetime) -> RateLimited:
    """LiteLLM's (v3 rate limiter) refusal: the entity by its descriptor key (a key: `api_key` and its
    hash), the limit's type, and when the minute resets (for parallel requests, a minute from now)."""
    kind, _, entity_id = spec.entity_id.partition(":")
    descriptor, value = (DESCRIPTORS[kind], entity_id) if entity_id else ("api_key", spec.entity_id)
    resets = account.end if account.end is not None else now + MINUTE
    return RateLimited(f"Rate limit exceeded for {descriptor}: {value}. Limit type: {LIMIT_TYPES[measure]}. "
                       f"Current limit: {int(spec.max_budget or 0)}, Remaining: 0. "
                       f"Limit resets at: {resets:%Y-%m-%d %H:%M:%S} UTC")
