"""The books balance on a cluster: three Kafka nodes of the suite's own, two pricers, two ledgers and
two proxy replicas of two workers each under a steady load, while a broker and then the active
controller are SIGKILLed and restarted, every service is rolled one at a time, a third ledger joins
and leaves, a ledger is paused past its session timeout, and budgets are spent while a broker is
down and while a proxy restarts. After each step every answered call is logged once at its quoted
cost, every total is the sum of its logs and of the headers, and reconcile exits 0
(FaultRig.assert_books_balance, cumulative over the module).

The first step is the short form that `make test` runs (the cluster, one broker SIGKILLed under
load, the books); the others are long mode (`make faults-cluster`)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
from decimal import Decimal

import aiohttp
import psycopg
import pytest

from shared.settings import env_float
from stack import procs
from tests.faults.budget_load import BudgetRun, budget_key, call, concurrent_callers, keep_alive_client
from tests.faults.load import VirtualKey
from tests.faults.test_faults import under_load
from tests.fixtures.faults import CLUSTER_PROXY_WORKERS, REPLICAS, FaultRig, FaultSettings, long_mode
from tests.fixtures.polling import eventually, eventually_async
from tests.fixtures.stack import ServiceProcess, free_port

pytestmark = [pytest.mark.faults, pytest.mark.cluster_faults, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def fault_settings() -> FaultSettings:
    """The fault suite's settings at a lower default rate: three brokers share this machine's cores."""
    return dataclasses.replace(FaultSettings.from_env(), rate=env_float(os.environ, "TALLY_FAULTS_RATE", 100.0))


def partitions_owned_by(database_url: str, owner: str) -> list[tuple[str, int]]:
    """The (topic, partition)s whose latest claim in tally_partition_owners is `owner`'s."""
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT topic, partition FROM tally_partition_owners WHERE owner = %s ORDER BY 1, 2",
                            (owner,)).fetchall()


async def test_a_broker_sigkilled_under_load(cluster_faults: FaultRig):
    """SIGKILL a node that is not the active controller under load: on the two left, nothing lost, nothing doubled."""
    nodes = cluster_faults.broker
    victim = next(n for n in nodes.nodes if n != nodes.active_controller())

    async def fault() -> None:
        await asyncio.to_thread(nodes.sigkill, victim)

    result = await under_load(cluster_faults, fault, seed=31)
    assert len(result.answered) > 0
    assert result.failed == []
    await cluster_faults.assert_books_balance()  # with the node still down


@long_mode
async def test_the_killed_broker_restarted_under_load(cluster_faults: FaultRig):
    """The node SIGKILLed in the step before starts again under load and catches up: the books still balance."""
    nodes = cluster_faults.broker
    assert len(nodes.down) == 1, f"the step before should have left one node down, not {nodes.down}"

    async def fault() -> None:
        await asyncio.to_thread(nodes.restart, nodes.down[0])

    result = await under_load(cluster_faults, fault, seed=38)
    assert result.failed == []
    await cluster_faults.assert_books_balance()


@long_mode
async def test_the_active_controller_sigkilled_then_restarted(cluster_faults: FaultRig):
    """SIGKILL the KRaft quorum's leader (a new one is elected), restart it: the books still balance."""
    nodes = cluster_faults.broker
    leader = nodes.active_controller()

    async def fault() -> None:
        await asyncio.to_thread(nodes.sigkill, leader)
        await asyncio.sleep(cluster_faults.settings.calm_s)
        await asyncio.to_thread(nodes.restart, leader)

    await under_load(cluster_faults, fault, seed=32)
    assert nodes.active_controller() is not None
    await cluster_faults.assert_books_balance()


@long_mode
async def test_every_pricer_ledger_and_proxy_rolled_one_at_a_time(cluster_faults: FaultRig):
    """SIGTERM and restart each pricer, ledger and proxy in turn, each healthy before the next."""
    async def roll() -> None:
        for name in ("pricer", "pricer-b", "ledger", "ledger-b", "proxy-a", "proxy-b"):
            await asyncio.to_thread(cluster_faults.stack.kill, name, signal.SIGTERM)
            await cluster_faults.restart(name)
            if name.startswith("proxy"):
                # Load on both replicas again before the other stops (the load client skips a
                # replica for a second after a refused connection, as a load balancer would).
                await asyncio.sleep(cluster_faults.settings.calm_s)

    await under_load(cluster_faults, roll, seed=33)
    await cluster_faults.assert_books_balance()


@long_mode
async def test_a_third_ledger_joins_then_leaves(cluster_faults: FaultRig):
    """A third ledger takes a share of the partitions, then stops; the other two take them back."""
    stack = cluster_faults.stack
    stack.services["ledger-c"] = ServiceProcess("ledger-c", "services.ledger", free_port(), stack.log_dir / "ledger-c.log",
                                                extra_env={"LEDGER_SESSION_TIMEOUT_MS": "6000"})

    async def join_and_leave() -> None:
        await cluster_faults.restart("ledger-c")
        await asyncio.sleep(cluster_faults.settings.calm_s)  # it commits a share meanwhile
        await asyncio.to_thread(stack.kill, "ledger-c", signal.SIGTERM)

    try:
        await under_load(cluster_faults, join_and_leave, seed=34)
    finally:
        await asyncio.to_thread(stack.kill, "ledger-c", signal.SIGTERM)
        del stack.services["ledger-c"]
    claimed = (stack.log_dir / "ledger-c.log").read_text(errors="replace")
    assert "ledger_partitions_claimed" in claimed
    await cluster_faults.assert_books_balance()


@long_mode
async def test_a_ledger_paused_past_its_session_then_resumed(cluster_faults: FaultRig):
    """SIGSTOP a ledger for longer than its session timeout, then SIGCONT: the other took its partitions; no batch of it lands twice."""
    ledger = cluster_faults.stack.services["ledger"].process
    assert ledger is not None
    database_url = cluster_faults.stack.common.database_url
    paused = f"{socket.gethostname()}:{ledger.pid}"  # how a ledger names itself in tally_partition_owners
    assert partitions_owned_by(database_url, paused), "the ledger to pause owns no partition: the step would prove nothing"

    async def pause() -> None:
        ledger.send_signal(signal.SIGSTOP)
        try:
            # Past its 6 s session timeout the group gives its partitions to ledger-b, whose claim
            # (waiting at most the 30 s idle-in-transaction timeout if the pause caught a batch) takes them.
            await asyncio.to_thread(eventually, lambda: not partitions_owned_by(database_url, paused), 60,
                                    "ledger-b to claim the paused ledger's partitions", 0.5)
        finally:
            ledger.send_signal(signal.SIGCONT)

    await under_load(cluster_faults, pause, seed=35)
    await cluster_faults.assert_books_balance()


# -- budgets on the cluster (docs/budgets.md: overshoot ≤ one call per worker process that served
# the key; one keep-alive client gets ≥ 99 % of its budget) ---------------------------------------

BUDGET_CALLS = 100  # a budget of this many calls' worth


async def all_workers_ready(rig: FaultRig, name: str, since: int = 0) -> None:
    """Wait until every worker of proxy `name` has told its parent it serves (its log past `since`)."""
    log = rig.stack.services[name].log_path
    await asyncio.to_thread(eventually, lambda: log.read_bytes()[since:].count(b'"proxy_worker_ready"') >= CLUSTER_PROXY_WORKERS,
                            60, f"{name}'s {CLUSTER_PROXY_WORKERS} workers to serve")


async def one_call_cost(rig: FaultRig) -> Decimal:
    """What one budget call costs (every one costs the same): one call with a key of ample budget."""
    run = BudgetRun(await budget_key(rig.proxies[0], rig.stack.master_key, rig.population, Decimal(1)), Decimal(1))
    async with aiohttp.ClientSession() as session:
        assert await call(session, rig.proxies, run, rig.population.customers[0])
    rig.books.add(run.result)
    return run.spent


async def new_budget(rig: FaultRig, calls: int, cost: Decimal) -> BudgetRun:
    max_budget = cost * calls
    return BudgetRun(await budget_key(rig.proxies[0], rig.stack.master_key, rig.population, max_budget), max_budget)


async def budget_runs(rig: FaultRig, spread_calls: int) -> tuple[Decimal, BudgetRun, BudgetRun]:
    """Once every worker serves: a call's cost, a key for many callers (`spread_calls` calls' worth)
    and one for a keep-alive client (BUDGET_CALLS' worth)."""
    for name in REPLICAS:
        await all_workers_ready(rig, name)
    cost = await one_call_cost(rig)
    return cost, await new_budget(rig, spread_calls, cost), await new_budget(rig, BUDGET_CALLS, cost)


def key_spend(database_url: str, key: VirtualKey) -> tuple[Decimal, Decimal, list[tuple]]:
    """(the key's total, Σ its spend logs, its budget lease rows) in Postgres."""
    with psycopg.connect(database_url) as conn:
        total = conn.execute('SELECT spend FROM "LiteLLM_VerificationToken" WHERE token = %s', (key.hashed,)).fetchone()[0]
        logged = conn.execute('SELECT coalesce(sum(spend), 0) FROM "LiteLLM_SpendLogs" WHERE api_key = %s', (key.hashed,)).fetchone()[0]
        leases = conn.execute("SELECT holder, granted, used, inflight FROM tally_leases.budget_leases WHERE entity_id = %s ORDER BY 1",
                              (key.hashed,)).fetchall()
    return total, logged, leases


def assert_budget_kept(rig: FaultRig, run: BudgetRun, cost: Decimal, holders: int) -> Decimal:
    """Once the books balance: the key's total = Σ its logs = Σ its cost headers (to the digit, when
    no call of it was ambiguous), every call cost `cost`, and the spend ≤ max_budget + one call per
    holder. Returns the share of the budget delivered."""
    total, logged, leases = key_spend(rig.stack.common.database_url, run.key)
    assert total == logged, f"key total {total} ≠ Σ its spend logs {logged}"
    if not run.result.failed:
        assert total == run.spent, f"key total {total} ≠ Σ its {len(run.result.answered)} cost headers {run.spent}"
    assert run.call_costs == {cost}
    assert run.refused > 0, "the budget was never refused"
    assert total <= run.max_budget + holders * cost, (
        f"spend {total} passed max_budget {run.max_budget} by {(total - run.max_budget) / cost} calls (bound {holders})")
    share = total / run.max_budget
    print(f"budget {run.max_budget}: {len(run.result.answered)} calls answered, spend {total} "
          f"({share:.2%}, {(total - run.max_budget) / cost:+} calls), {run.refused} refused, {run.unavailable} 503s sent again; "
          f"leases (holder, granted, used, in flight): {leases}")
    return share


@long_mode
async def test_budgets_hold_while_a_broker_is_down(cluster_faults: FaultRig):
    """With one node SIGKILLed, 64 callers over 2 proxies × 2 workers pass a budget by ≤ 4 calls; a keep-alive client gets ≥ 99 % of one."""
    rig = cluster_faults
    cost, spread, keep = await budget_runs(rig, spread_calls=2 * BUDGET_CALLS)
    nodes = rig.broker
    victim = next(n for n in nodes.nodes if n != nodes.active_controller())

    async def spend_with_a_node_down() -> None:
        await asyncio.to_thread(nodes.sigkill, victim)
        await concurrent_callers(rig.proxies, spread, rig.population.customers[0])
        await keep_alive_client(rig.proxies[0], keep, rig.population.customers[1])
        assert procs.recorded_pid(victim.name) is None, f"{victim.name} came back during the budget runs"
        await asyncio.to_thread(nodes.restart, victim)

    await under_load(rig, spend_with_a_node_down, seed=36)
    for run in (spread, keep):
        assert run.result.failed == [], f"budget calls failed with a node down: {run.result.failed[:3]}"
        rig.books.add(run.result)
    await rig.assert_books_balance()
    assert_budget_kept(rig, spread, cost, holders=len(REPLICAS) * CLUSTER_PROXY_WORKERS)
    assert assert_budget_kept(rig, keep, cost, holders=len(REPLICAS) * CLUSTER_PROXY_WORKERS) >= Decimal("0.99")


@long_mode
async def test_budgets_hold_while_a_proxy_restarts(cluster_faults: FaultRig):
    """64 callers spend a budget while proxy-b stops and starts again (6 worker processes in all) and pass it by ≤ 6 calls; a keep-alive client on proxy-a meanwhile gets ≥ 99 % of one."""
    rig = cluster_faults
    cost, spread, keep = await budget_runs(rig, spread_calls=10 * BUDGET_CALLS)
    proxy_b_log = rig.stack.services["proxy-b"].log_path

    async def spend_while_proxy_b_restarts() -> None:
        spending = asyncio.create_task(concurrent_callers(rig.proxies, spread, rig.population.customers[0]))
        # Every worker holds a lease on the spread key before proxy-b stops.
        await eventually_async(lambda: len(spread.result.answered) >= BUDGET_CALLS or spending.done(), 30, "100 calls of the spread key")
        for _ in range(CLUSTER_PROXY_WORKERS):  # a new connection each: proxy-b hands them to its workers in turn
            async with aiohttp.ClientSession() as fresh:  # so each takes a lease of the keep-alive key too
                assert await call(fresh, [rig.stack.url("proxy-b")], keep, rig.population.customers[1])
        since = proxy_b_log.stat().st_size
        await asyncio.to_thread(rig.stack.kill, "proxy-b", signal.SIGTERM)  # its workers return their leases as they stop
        await asyncio.gather(rig.restart("proxy-b"), keep_alive_client(rig.proxies[0], keep, rig.population.customers[1]))
        await all_workers_ready(rig, "proxy-b", since)
        await spending

    await under_load(rig, spend_while_proxy_b_restarts, seed=37)
    for run in (spread, keep):
        rig.books.add(run.result)
    await rig.assert_books_balance()
    holders = len(REPLICAS) * CLUSTER_PROXY_WORKERS + CLUSTER_PROXY_WORKERS  # proxy-b's restarted workers are new holders
    assert_budget_kept(rig, spread, cost, holders)
    assert assert_budget_kept(rig, keep, cost, holders) >= Decimal("0.99")
