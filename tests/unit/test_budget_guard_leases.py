"""BudgetGuards of several workers sharing one lease authority (the in-memory store): what one client
gets, the overshoot under concurrency, idle returns, and an unreachable authority."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from services.proxy.auth.keys import CallerIdentity
from services.proxy.budget.admission import Admission, AwaitRenewal, BudgetRequest
from services.proxy.budget.entities import EntityDirectory
from services.proxy.budget.estimate import Rates
from services.proxy.budget.guard import BudgetExceeded, BudgetGuard
from services.proxy.budget.lease_keeper import LeaseKeeper
from services.proxy.budget.lease_store import LeasesUnavailable, MemoryLeaseStore
from services.proxy.budget.totals import TotalsView
from shared.events import TokenUsage, UsageEvent
from shared.pricing import Catalog

D = Decimal
COST = D("0.0000074")  # what each call really costs
ESTIMATE = D("0.00000875")  # the guard's upper bound for BODY: 47 x 5e-08 + 80 x 8e-08
BODY = {"messages": [{"role": "user", "content": "x" * 40}], "max_tokens": 80}
RATES = {"m": Rates(D("5E-8"), D("8E-8"), 8192)}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def workers(store: MemoryLeaseStore, n: int, clock: Clock | None = None) -> list[BudgetGuard]:
    guards = []
    for i in range(n):
        totals = TotalsView()
        keeper = LeaseKeeper(store, f"w{i}", totals, clock=clock or Clock())
        guards.append(BudgetGuard(EntityDirectory(), totals, Catalog.from_entries({}), RATES, keeper=keeper, lease_wait_s=1))
    return guards


def caller(budget: Decimal) -> CallerIdentity:
    return CallerIdentity.from_state("k1", {"max_budget": str(budget)})


async def admit(guard: BudgetGuard, who: CallerIdentity) -> Admission:
    request = BudgetRequest("r", who, "m", None, (), "acompletion", BODY)
    try:
        return guard.admit(request)
    except AwaitRenewal as short:
        return await short.admit_after_renewal()


def settle(guard: BudgetGuard, admission: Admission) -> None:
    event = UsageEvent.model_construct(quoted_cost=COST, start_time=datetime.now(timezone.utc),
                                       usage=TokenUsage(prompt_tokens=20, completion_tokens=80))
    guard.settle(admission, event)


async def calls_until_refused(guard: BudgetGuard, who: CallerIdentity) -> int:
    calls = 0
    while True:
        try:
            admission = await admit(guard, who)
        except BudgetExceeded:
            return calls
        settle(guard, admission)
        calls += 1


async def test_one_client_on_one_of_two_workers_gets_its_whole_budget() -> None:
    """Budget of 100 calls, every call through worker 0 of 2: 100 calls admitted, then the budget error."""
    store = MemoryLeaseStore()
    first, _second = workers(store, 2)
    assert await calls_until_refused(first, caller(COST * 100)) == 100


async def test_64_callers_on_four_workers_pass_the_budget_by_at_most_one_call_per_worker() -> None:
    """64 concurrent callers spread over 4 workers, calls finishing in random order: spend <= B + 4 calls, >= 99 % of B."""
    store = MemoryLeaseStore()
    guards = workers(store, 4)
    budget = COST * 200
    who = caller(budget)
    spent: list[Decimal] = []
    rng = random.Random(3)

    async def one(i: int) -> None:
        guard = guards[i % 4]
        while True:
            try:
                admission = await admit(guard, who)
            except BudgetExceeded:
                return
            await asyncio.sleep(rng.random() / 1000)  # the call runs upstream a while
            settle(guard, admission)
            spent.append(COST)

    loops = [asyncio.ensure_future(guard.keeper.run()) for guard in guards]  # renew ahead, trim, return
    await asyncio.gather(*(one(i) for i in range(64)))
    for loop in loops:
        loop.cancel()
    await asyncio.gather(*loops, return_exceptions=True)
    total = sum(spent, D(0))
    assert total <= budget + 4 * COST, total / COST
    assert total >= budget * D("0.99"), total / COST


async def test_an_idle_workers_lease_comes_back_to_the_others() -> None:
    """Worker 0 takes a lease and goes idle; once its keeper returns it, worker 1 can spend all the rest."""
    clock = Clock()
    store = MemoryLeaseStore()
    first, second = workers(store, 2, clock)
    who = caller(COST * 40)
    settle(first, await admit(first, who))
    first_account = first._accounts["key"]["k1"]
    assert first_account.lease > COST * 4  # it holds a slice, far more than it used
    first.keeper.tick()  # sees the account as active
    clock.now = 2.0
    first.keeper.tick()  # idle for over idle_s: returns what it holds
    await first_account.renewal  # type: ignore[misc]
    assert first_account.lease == COST
    assert await calls_until_refused(second, who) == 39


async def test_a_call_short_of_lease_gets_503_when_the_authority_is_unreachable() -> None:
    """The store raises LeasesUnavailable: the call is refused with 503, not with a budget error."""
    class Down(MemoryLeaseStore):
        async def renew(self, window, ask, ttl_s):  # type: ignore[no-untyped-def]
            raise LeasesUnavailable("OperationalError: connection refused")

    guard = workers(Down(), 1)[0]
    with pytest.raises(LeasesUnavailable) as refused:
        await admit(guard, caller(D(1)))
    assert refused.value.status == 503
    assert refused.value.message.startswith("Budget authority unavailable, try again shortly")


async def test_a_worker_told_nothing_is_left_keeps_only_one_calls_worth() -> None:
    """Worker 0 holds 5 calls' worth, used 1; worker 1 uses up the rest. Once worker 0 hears the
    budget is all leased, it trims to one call's estimate beyond its 1 used, and worker 1 gets the rest."""
    clock = Clock()
    first, second = workers(MemoryLeaseStore(), 2, clock)
    who = caller(COST * 40)
    settle(first, await admit(first, who))
    account = first._accounts["key"]["k1"]
    assert account.lease == COST * 5  # an eighth of 40 calls
    assert await calls_until_refused(second, who) == 35
    await first.keeper.renew(account, D(0))  # a heartbeat: the authority answers that nothing is left
    assert account.scarce
    first.keeper.tick()
    await account.renewal  # type: ignore[misc]
    assert account.lease == COST + ESTIMATE
    clock.now = 0.3
    second.keeper.tick()  # its own "nothing left" is 0.3 s old: the next call that does not fit asks again
    assert await calls_until_refused(second, who) == 3  # 4 x COST - ESTIMATE freed: 3 more calls


@pytest.mark.parametrize(("kind", "state", "identity", "end_user", "label"), [
    ("team", {"team_id": "t1"}, {"team_id": "t1"}, None, "Team=t1 "),
    ("user", {"user_id": "u1"}, {"user_id": "u1"}, None, "User=u1 "),
    ("customer", {"user_id": "c1"}, {}, "c1", "End User=c1 "),
])
async def test_team_user_and_customer_budgets_are_leased_like_a_keys(kind: str, state: dict[str, str], identity: dict[str, str],
                                                                      end_user: str | None, label: str) -> None:
    """A team's (user's, customer's) budget of 30 calls, through two keys on two workers in turn: 31 calls (one
    worker's last call passes B, within the bound of one per worker), then its budget error."""
    from shared.events import EntityChanged

    guards = workers(MemoryLeaseStore(), 2)
    change = EntityChanged(entity_type=kind, entity_id=next(iter(state.values())), state={**state, "max_budget": str(COST * 30)})
    for guard in guards:
        guard.directory.apply(change)
    callers = [CallerIdentity.from_state(f"k{i}", identity) for i in range(2)]
    calls = 0
    while True:
        guard = guards[calls % 2]
        request = BudgetRequest("r", callers[calls % 2], "m", end_user, (), "acompletion", BODY)
        try:
            try:
                admission = guard.admit(request)
            except AwaitRenewal as short:
                admission = await short.admit_after_renewal()
        except BudgetExceeded as refused:
            assert refused.message.startswith(f"Budget has been exceeded! {label}Current cost: ")
            break
        settle(guard, admission)
        calls += 1
    assert calls == 31


async def test_a_call_waiting_for_a_lease_when_shutdown_begins_holds_nothing() -> None:
    """still_open raises during the wait (the proxy began to stop): the call gets that error and reserves nothing."""
    from services.proxy.errors import ServiceUnavailable

    guard = workers(MemoryLeaseStore(), 1)[0]

    def stopping() -> None:
        raise ServiceUnavailable("the proxy is shutting down")

    with pytest.raises(AwaitRenewal) as short:
        guard.admit(BudgetRequest("r", caller(COST * 10), "m", None, (), "acompletion", BODY))
    with pytest.raises(ServiceUnavailable):
        await short.value.admit_after_renewal(stopping)
    account = guard._accounts["key"]["k1"]
    assert (account.reserved, account.inflight, guard.reserved_total()) == (D(0), 0, D(0))


async def test_a_steady_worker_holds_two_seconds_of_its_own_use_not_an_eighth_of_the_budget() -> None:
    """2 calls a second on a 1,000-call budget: the first lease is 125 calls' worth; after two heartbeats
    3.5 s apart (7 calls between), the lease is what is committed plus 4 calls' worth (2 s of use)."""
    clock = Clock()
    guard, = workers(MemoryLeaseStore(), 1, clock)
    who = caller(COST * 1000)
    account = None
    for step in range(15):  # one call every 0.5 s, then the keeper's pass
        clock.now = step * 0.5
        settle(guard, await admit(guard, who))
        account = guard._accounts["key"]["k1"]
        if step == 0:
            assert account.lease == COST * 125
        guard.keeper.tick()
        if isinstance(account.renewal, asyncio.Task):
            await account.renewal
    assert account is not None
    assert account.lease - account.committed == COST * 4


def test_the_estimate_covers_the_dearest_group_the_call_may_fall_back_to() -> None:
    """A call that may fall back to a dearer group reserves that group's bound, not its own group's."""
    rates = {**RATES, "dear": Rates(D("5E-7"), D("8E-7"), 8192)}
    guard = BudgetGuard(EntityDirectory(), TotalsView(), Catalog.from_entries({}), rates)
    who = caller(D("1"))
    alone = BudgetRequest("r", who, "m", None, (), "acompletion", BODY)
    falling_back = BudgetRequest("r", who, "m", None, (), "acompletion", BODY, ("dear",))
    assert guard.estimate(alone) == ESTIMATE
    assert guard.estimate(falling_back) == D("0.0000875")  # 47 x 5e-07 + 80 x 8e-07
