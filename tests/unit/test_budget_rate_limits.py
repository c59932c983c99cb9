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
from services.proxy.budget.rate_limits import RateLimited
from services.proxy.budget.totals import TotalsView
from shared.events import TokenUsage, UsageEvent
from shared.pricing import Catalog
from tests.unit.test_budget_guard_leases import Clock as Monotonic

MINUTE_START = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = MINUTE_START + timedelta(seconds=5)

    def __call__(self) -> datetime:
        return self.now


def workers(n: int, clock: Clock, monotonic: Monotonic | None = None) -> list[BudgetGuard]:
    store = MemoryLeaseStore(clock)
    guards = []
    for i in range(n):
        totals = TotalsView()
        keeper = LeaseKeeper(store, f"w{i}", totals, clock=monotonic or Monotonic())
        guards.append(BudgetGuard(EntityDirectory(), totals, Catalog.from_entries({}), {}, clock=clock, keeper=keeper,
                                  lease_wait_s=1))
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
    """rpm_limit 10, every call through worker 0 of 2: 10 requests in the minute, then LiteLLM's 429 for the key's requests."""
    clock = Clock()
    first, _ = workers(2, clock)
    calls, message = await admitted_until_limited(first, CallerIdentity.from_state("k", {"rpm_limit": 10}))
    assert calls == 10
    assert message == "Rate limit exceeded for api_key: k. Limit type: requests. Current limit: 10, Remaining: 0. Limit resets at: 2026-01-01 12:01:00 UTC"


async def test_the_next_minute_gives_the_rpm_limit_again() -> None:
    """Refused in one minute, the key is admitted again once the clock is in the next."""
    clock = Clock()
    guard, = workers(1, clock)
    caller = CallerIdentity.from_state("k", {"rpm_limit": 3})
    assert (await admitted_until_limited(guard, caller))[0] == 3
    clock.now = MINUTE_START + timedelta(minutes=1, seconds=1)
    assert (await admitted_until_limited(guard, caller))[0] == 3


async def test_tpm_counts_the_tokens_of_finished_calls() -> None:
    """tpm_limit 500, calls of 100 tokens on one worker: 5 calls, then LiteLLM's 429 for the key's tokens."""
    guard, = workers(1, Clock())
    calls, message = await admitted_until_limited(guard, CallerIdentity.from_state("k", {"tpm_limit": 500}))
    assert calls == 5
    assert message == "Rate limit exceeded for api_key: k. Limit type: tokens. Current limit: 500, Remaining: 0. Limit resets at: 2026-01-01 12:01:00 UTC"


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


async def admit_only(guard: BudgetGuard, caller: CallerIdentity) -> Admission:
    request = BudgetRequest("r", caller, "m", None, (), "acompletion", {})
    try:
        return guard.admit(request)
    except AwaitRenewal as short:
        return await short.admit_after_renewal()


async def test_max_parallel_requests_is_shared_by_the_workers() -> None:
    """Limit 4: 3 calls in flight on worker 0, 1 on worker 1, the 5th refused with 429; one ends, the next passes."""
    clock = Clock()
    first, second = workers(2, clock)
    caller = CallerIdentity.from_state("k", {"max_parallel_requests": 4})
    held = [await admit_only(first, caller) for _ in range(3)] + [await admit_only(second, caller)]
    with pytest.raises(RateLimited) as refused:
        await admit_only(second, caller)
    assert refused.value.message.startswith("Rate limit exceeded for api_key: k. Limit type: max_parallel_requests. Current limit: 4, Remaining: 0.")
    first.settle(held[0], UsageEvent.model_construct(quoted_cost=None, start_time=clock(), usage=TokenUsage()))
    first.keeper.tick()  # worker 0 hears nothing is left and keeps one call's worth beyond its two in flight
    await first._accounts["parallel"]["k"].renewal  # type: ignore[misc]
    assert (first.slots_held, second.slots_held) == (2, 1)
    await admit_only(first, caller)
    assert first.slots_held == 3


async def test_a_dead_workers_slots_come_back_once_its_lease_expires() -> None:
    """Worker 0 holds 4 slots and stops (no settle, no heartbeat); after the TTL worker 1 gets all 4."""
    clock, monotonic = Clock(), Monotonic()
    first, second = workers(2, clock, monotonic)
    caller = CallerIdentity.from_state("k", {"max_parallel_requests": 4})
    for _ in range(4):
        await admit_only(first, caller)
    with pytest.raises(RateLimited):
        await admit_only(second, caller)
    clock.now += timedelta(seconds=11)  # past worker 0's 10 s TTL, by the store's clock
    monotonic.now = 0.3
    second.keeper.tick()  # worker 1's "nothing left" is 0.3 s old: the next call asks again
    for _ in range(4):
        await admit_only(second, caller)
    assert second.slots_held == 4


async def test_a_worker_renews_a_slots_lease_it_may_have_lost_before_using_it() -> None:
    """Past 0.8 x TTL since its last renewal, a call that fits the slots lease still renews it first (once)."""
    clock, monotonic = Clock(), Monotonic()
    guard, = workers(1, clock, monotonic)
    caller = CallerIdentity.from_state("k", {"max_parallel_requests": 80})  # a first lease of 10 slots
    await admit_only(guard, caller)
    renewals = guard.keeper.renewals
    await admit_only(guard, caller)
    assert guard.keeper.renewals == renewals  # fits: no renewal
    monotonic.now = 8.0  # 0.8 x the 10 s TTL
    await admit_only(guard, caller)
    assert guard.keeper.renewals == renewals + 1
    assert guard._accounts["parallel"]["k"].expires == 16.0
