"""The books balance on a cluster: three Kafka nodes of the suite's own, two pricers, two ledgers and
two proxy replicas under a steady load, while a broker and then the active controller are SIGKILLed
and restarted, every service is rolled one at a time, a third ledger joins and leaves, and a ledger
is paused past its session timeout. After each step every answered call is logged once at its
quoted cost, every total is the sum of its logs and of the headers, and reconcile exits 0
(FaultRig.assert_books_balance, cumulative over the module)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal

import pytest

from shared.settings import env_float
from tests.faults.test_faults import under_load
from tests.fixtures.faults import FaultRig, FaultSettings, long_mode
from tests.fixtures.stack import ServiceProcess, free_port

pytestmark = [pytest.mark.faults, pytest.mark.cluster_faults, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def fault_settings() -> FaultSettings:
    """The fault suite's settings at a lower default rate: three brokers share this machine's cores."""
    return dataclasses.replace(FaultSettings.from_env(), rate=env_float(os.environ, "TALLY_FAULTS_RATE", 100.0))


@long_mode
async def test_a_broker_sigkilled_then_restarted(cluster_faults: FaultRig):
    """SIGKILL a node that is not the active controller, restart it: nothing lost, nothing doubled."""
    nodes = cluster_faults.broker
    victim = next(n for n in nodes.nodes if n != nodes.active_controller())

    async def fault() -> None:
        await asyncio.to_thread(nodes.sigkill, victim)
        await asyncio.sleep(cluster_faults.settings.calm_s)  # the load runs on two nodes meanwhile
        await asyncio.to_thread(nodes.restart, victim)

    result = await under_load(cluster_faults, fault, seed=31)
    assert len(result.answered) > 0
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

    async def pause() -> None:
        ledger.send_signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(10.0)  # past the 6 s session timeout: the group gives its partitions away
        finally:
            ledger.send_signal(signal.SIGCONT)

    await under_load(cluster_faults, pause, seed=35)
    await cluster_faults.assert_books_balance()
    assert "ledger_partitions_claimed" in cluster_faults.stack.tail("ledger-b", 400)
