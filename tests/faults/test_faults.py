"""The books balance after anything: each scenario runs a fault under a steady load through two
proxy replicas (every service its own process, the suite's own Kafka broker and PostgreSQL), then
checks that the spend logs hold exactly the answered calls at exactly their quoted costs, that
every key, team, user, customer and tag total is the sum of its logs and of the headers, and that
`python -m services.ledger reconcile` exits 0. The books are cumulative: each check covers every
call of the module so far. The proxy replica's SIGKILL runs last but one, the broker restart last
(an open problem, expected to fail under load; see docs/faults.md)."""

from __future__ import annotations

import asyncio
import random
import time

import aiohttp
import pytest

from tests.faults.load import LoadResult, run_load
from tests.fixtures.faults import FaultRig

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]

MAX_CALLS = 1_000_000  # the load is bounded by its stop event and its duration, this is a backstop


async def under_load(rig: FaultRig, fault, *, seed: int, max_s: float = 300.0) -> LoadResult:  # noqa: ANN001
    """Run `fault()` while the load client runs; stop the load `calm_s` after the fault returns."""
    stop = asyncio.Event()
    assert rig.population is not None
    load = asyncio.create_task(run_load(rig.proxies, rig.population, rate=rig.settings.rate, duration_s=max_s,
                                        max_calls=MAX_CALLS, stop=stop, seed=seed))
    try:
        await asyncio.sleep(rig.settings.calm_s)  # steady load before the fault
        await fault()
        await asyncio.sleep(rig.settings.calm_s)  # steady load after it
    finally:
        stop.set()
        result = await load
    rig.books.add(result)
    print(f"\nload: {result.summary()}")
    return result


async def metric(base: str, name: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(base + "/metrics") as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{base}/metrics has no {name}")


async def test_pricer_and_ledger_sigkilled_at_random_moments(faults: FaultRig):
    """SIGKILL the pricer and the ledger at random moments, several times each: nothing lost, nothing doubled."""
    rng = random.Random(1)
    victims = ["pricer", "ledger"] * faults.settings.kills_each
    rng.shuffle(victims)

    async def kill_and_restart() -> None:
        for victim in victims:
            await asyncio.sleep(rng.uniform(0.2, 1.5))  # a random moment of the load
            await faults.sigkill(victim)
            await faults.restart(victim)

    result = await under_load(faults, kill_and_restart, seed=1)
    assert result.failed == []
    await faults.assert_books_balance()


@pytest.mark.postgres_restart
async def test_postgres_restarted(faults: FaultRig):
    """A fast restart of PostgreSQL (every session cut) under load: the ledger retries and loses nothing."""

    async def restart() -> None:
        await asyncio.to_thread(faults.postgres.restart)

    result = await under_load(faults, restart, seed=3)
    assert result.failed == []
    await faults.assert_books_balance()


async def test_ledger_replayed_into_a_fresh_schema_under_load(faults: FaultRig):
    """`python -m services.ledger replay` rebuilds every table from the topics and swaps it in while load runs."""
    outputs: list[str] = []

    async def replay() -> None:
        status, output = await faults.ledger_command("replay", "--no-progress", "--drop-backup")
        outputs.append(output)
        assert status == 0, output[-3000:]

    result = await under_load(faults, replay, seed=4)
    assert result.failed == []
    assert "events rebuilt into public" in outputs[0]
    await faults.assert_books_balance()


async def test_proxy_replica_sigkilled(faults: FaultRig):
    """SIGKILL one of two proxy replicas under load: every call it had answered is in the books."""
    async def kill_replica() -> None:
        await asyncio.sleep(random.Random(5).uniform(0.5, 2.0))  # a random moment of the load
        await faults.sigkill("proxy-b")
        await asyncio.sleep(faults.settings.calm_s)  # the load runs on proxy-a alone for a while
        await faults.restart("proxy-b")  # its spool (if anything is in it) drains on start

    result = await under_load(faults, kill_replica, seed=5)
    by_b = [a for a in result.answered if a.replica == faults.stack.url("proxy-b")]
    assert by_b, "proxy-b answered nothing before it was killed"
    await faults.assert_books_balance()


async def test_kafka_broker_stopped_then_started(faults: FaultRig):
    """With the broker stopped, the proxies keep answering and spool; the spools drain when it returns."""
    outage: list[float] = []

    async def broker_outage() -> None:
        await asyncio.to_thread(faults.broker.stop)
        outage.append(time.monotonic())
        await asyncio.sleep(faults.settings.broker_down_s)  # the outage's duration
        outage.append(time.monotonic())
        await asyncio.to_thread(faults.broker.start)

    spooled_before = sum([await metric(p, "tally_proxy_usage_events_spooled_total") for p in faults.proxies])
    result = await under_load(faults, broker_outage, seed=2)
    assert result.failed == []
    answered_while_down = [a for a in result.answered if outage[0] <= a.answered_at <= outage[1]]
    assert answered_while_down, "no call was answered while the broker was down"
    spooled = sum([await metric(p, "tally_proxy_usage_events_spooled_total") for p in faults.proxies]) - spooled_before
    assert spooled >= len(answered_while_down), f"{spooled} events spooled, {len(answered_while_down)} calls answered while down"
    await faults.assert_books_balance()
    assert [await metric(p, "tally_proxy_spool_pending") for p in faults.proxies] == [0.0, 0.0]
