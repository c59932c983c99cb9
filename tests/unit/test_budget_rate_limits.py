"""rpm_limit and tpm_limit as leased budgets of one-minute windows, shared by workers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from services.proxy.auth.keys import CallerIdentity
from services.proxy.budget.admission import Admission, AwaitRenewal, BudgetRequest
from services.proxy.budget.entities import EntityDirectory
from services.proxy.budget.guard import BudgetGuard
from services.proxy.budget.lease_keeper import LeaseKeeper
from services.proxy.budget.lease_store import MemoryLeaseStore
from services.proxy.budget.limiter import RateLimited
from services.proxy.budget.totals import TotalsView
from shared.events import TokenUsage, UsageEvent
from shared.pricing import Catalog

MINUTE_START = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = MINUTE_START + timedelta(seconds=5)

    def __call__(self) -> datetime:
        return self.now


def workers(n: int, clock: Clock) -> list[BudgetGuard]:
    store = MemoryLeaseStore(clock)
    guards = []
    for i in range(n):
        totals = TotalsView()
        guards.append(BudgetGuard(EntityDirectory(), totals, Catalog.from_entries({}), {}, clock=clock,
                                  keeper=LeaseKeeper(store, f"w{i}", totals), lease_wait_s=1))
    return guards


async def call(guard: BudgetGuard, caller: CallerIdentity, tokens: int = 100) -> None:
    request = BudgetRequest("r", caller, "m", None, (), "acompletion", {})
    try:
        admission = guard.admit(request)
    except AwaitRenewal as short:
        admission = await short.admit_after_renewal()
    assert isinstance(admission, Admission)
    guard.settle(admission, UsageEvent.model_construct(quoted_cost=None, start_time=guard.clock(),
                                                      usage=TokenUsage(prompt_tokens=tokens // 2, completion_tokens=tokens - tokens // 2)))


async def admitted_until_limited(guard: BudgetGuard, caller: CallerIdentity) -> tuple[int, str]:
    calls = 0
    while True:
        try:
            await call(guard, caller)
        except RateLimited as refused:
            return calls, refused.message
        calls += 1


async def test_one_client_on_one_of_two_workers_gets_the_whole_rpm_limit() -> None:
    """rpm_limit 10, every call through worker 0 of 2: 10 requests in the minute, then 429 naming rpm_limit."""
    clock = Clock()
    first, _ = workers(2, clock)
    calls, message = await admitted_until_limited(first, CallerIdentity.from_state("k", {"rpm_limit": 10}))
    assert calls == 10
    assert message.startswith("Rate limit exceeded for api_key: k... rpm_limit: 10, no request of this minute's limit is left")


async def test_the_next_minute_gives_the_rpm_limit_again() -> None:
    """Refused in one minute, the key is admitted again once the clock is in the next."""
    clock = Clock()
    guard, = workers(1, clock)
    caller = CallerIdentity.from_state("k", {"rpm_limit": 3})
    assert (await admitted_until_limited(guard, caller))[0] == 3
    clock.now = MINUTE_START + timedelta(minutes=1, seconds=1)
    assert (await admitted_until_limited(guard, caller))[0] == 3


async def test_tpm_counts_the_tokens_of_finished_calls() -> None:
    """tpm_limit 500, calls of 100 tokens on one worker: 5 calls, then 429 naming tpm_limit."""
    guard, = workers(1, Clock())
    calls, message = await admitted_until_limited(guard, CallerIdentity.from_state("k", {"tpm_limit": 500}))
    assert calls == 5
    assert message.startswith("Rate limit exceeded for api_key: k... tpm_limit: 500, no token of this minute's limit is left")


async def test_tpm_across_workers_is_shared_not_split() -> None:
    """tpm_limit 500, calls of 100 tokens alternating two workers: 5 calls, then 429 (the bound allows one more per worker)."""
    guards = workers(2, Clock())
    caller = CallerIdentity.from_state("k", {"tpm_limit": 500})
    calls = 0
    while True:
        try:
            await call(guards[calls % 2], caller)
        except RateLimited:
            break
        calls += 1
    assert calls == 5
