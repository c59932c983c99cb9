"""Several ledgers sharing the priced topic's partitions: a ledger that lost a partition can never
commit rows or offsets for it afterwards (fenced in Postgres by per-partition epochs)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from services.ledger.batching import make_batch, read_item
from services.ledger.checks import check_schema
from services.ledger.errors import PartitionsFenced
from services.ledger.store import SWAP_LOCK, LedgerStore, make_pool
from shared.events import encode
from shared.topics import PRICED
from tests.fixtures.ledger_support import T0, count_logs, poll, priced, produce, query, wait_for_logs
from tests.fixtures.stack import free_port

ROOT = Path(__file__).resolve().parents[2]


def _items(topic: str, partition: int, events: list) -> list:
    return [read_item(topic, partition, offset, encode(e), priced_topic=topic, store_bodies=False)
            for offset, e in enumerate(events)]


async def test_a_batch_of_a_ledger_whose_partition_was_claimed_since_is_refused(settings):
    """Ledger A claims partition 0, B claims it after: A's batch writes nothing, B's writes each row once."""
    topic = settings.topic(PRICED)
    events = [priced(request_id=f"fence-{i}", cost="0.000123") for i in range(5)]
    batch = make_batch(_items(topic, 0, events))
    async with make_pool(settings.database_url, "public", 2) as pool_a, make_pool(settings.database_url, "public", 2) as pool_b:
        a = LedgerStore(pool_a, "tally-ledger", store_bodies=False)
        b = LedgerStore(pool_b, "tally-ledger", store_bodies=False)
        assert await a.claim([(topic, 0)], "a") == {}
        assert await b.claim([(topic, 0)], "b") == {}
        with pytest.raises(PartitionsFenced):
            await a.apply(batch)
        assert await count_logs(settings.database_url) == 0
        assert await query(settings.database_url, "SELECT count(*) FROM tally_consumer_offsets") == [(0,)]
        await b.apply(batch)
        with pytest.raises(PartitionsFenced):
            await a.apply(batch)  # still refused: a's epoch never comes back
        assert await a.claim([(topic, 0)], "a") == {(topic, 0): 5}  # a new claim reads b's offset
    assert await query(settings.database_url, 'SELECT count(*), sum(spend) FROM "LiteLLM_SpendLogs"') == [(5, Decimal("0.000615"))]
    assert await query(settings.database_url, "SELECT epoch, owner FROM tally_partition_owners") == [(3, "a")]


async def test_a_claim_waits_for_the_batch_in_flight_and_reads_its_offsets(settings):
    """A batch that locked its partition before the claim commits; the claim then returns its offset."""
    topic = settings.topic(PRICED)
    batch = make_batch(_items(topic, 2, [priced(request_id=f"wait-{i}") for i in range(3)]))
    async with make_pool(settings.database_url, "public", 2) as pool_a, make_pool(settings.database_url, "public", 2) as pool_b:
        a = LedgerStore(pool_a, "tally-ledger", store_bodies=False)
        b = LedgerStore(pool_b, "tally-ledger", store_bodies=False)
        await a.claim([(topic, 2)], "a")
        async with await psycopg.AsyncConnection.connect(settings.database_url) as blocker:
            # Stop a's batch inside Postgres after its fence (which locks the partition's owner
            # row): the rollup table it writes later is locked here.
            await blocker.execute('LOCK TABLE "LiteLLM_DailyApiKeySpend" IN EXCLUSIVE MODE')
            committing = asyncio.create_task(a.apply(batch))
            await poll(lambda: _locks_waiting(settings.database_url, 1), what="a's batch waiting on the rollup table")
            claiming = asyncio.create_task(b.claim([(topic, 2)], "b"))
            await poll(lambda: _locks_waiting(settings.database_url, 2), what="b's claim waiting on a's batch")
            await blocker.rollback()
            await committing
            assert await claiming == {(topic, 2): 3}
    assert await count_logs(settings.database_url) == 3


async def _locks_waiting(database_url: str, count: int) -> bool:
    rows = await query(database_url, "SELECT count(DISTINCT l.pid) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                                     " WHERE NOT l.granted AND a.datname = current_database()")
    return rows[0][0] == count


def _start_ledger(settings, port: int, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers, "DATABASE_URL": settings.database_url,
           "TALLY_TOPIC_PREFIX": settings.topic_prefix, "LEDGER_PORT": str(port), "LEDGER_BATCH_MAX_EVENTS": "1000",
           "LEDGER_SESSION_TIMEOUT_MS": "6000"}
    env.pop("TALLY_CONFIG", None)
    with log_path.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "services.ledger"], cwd=ROOT, env=env, stdout=out, stderr=out)


async def test_a_paused_ledger_that_lost_its_partitions_cannot_commit_when_resumed(settings, tmp_path):
    """SIGSTOP ledger A with a batch in hand until B owns its partitions, then SIGCONT: A's batch is refused; books exact."""
    events = [priced(request_id=f"pause-{i}", key=f"sk-{i % 12}", team=f"team-{i % 4}", tags=(f"tag-{i % 5}",),
                     cost=f"0.{(i * 7919) % 10**9:09d}", at=T0.replace(minute=i % 60)) for i in range(3000)]
    total = sum((e.cost.total for e in events), Decimal(0))
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    a = _start_ledger(settings, free_port(), log_a)
    b = None
    try:
        await produce(settings, events[:1000])
        await wait_for_logs(settings.database_url, 1000, timeout=120)
        async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as swap:
            # The lock a replay's swap takes: A's next batch, events in hand, waits at its start.
            await swap.execute("SELECT pg_advisory_lock(%s)", (SWAP_LOCK,))
            await produce(settings, events[1000:2000])
            await poll(lambda: _locks_waiting(settings.database_url, 1), timeout=60, what="A's batch waiting")
            a.send_signal(signal.SIGSTOP)
            b = _start_ledger(settings, free_port(), log_b)
            await poll(lambda: _logged(log_b, "ledger_partitions_claimed"), timeout=60, what="B claiming A's partitions")
            await swap.execute("SELECT pg_advisory_unlock(%s)", (SWAP_LOCK,))
        await wait_for_logs(settings.database_url, 2000, timeout=120)  # B wrote what A holds
        a.send_signal(signal.SIGCONT)
        await poll(lambda: _logged(log_a, "ledger_partitions_fenced"), timeout=60, what="A's late batch refused")
        await produce(settings, events[2000:])
        await wait_for_logs(settings.database_url, 3000, timeout=120)

        async def all_consumed() -> bool:
            rows = await query(settings.database_url, "SELECT sum(next_offset) FROM tally_consumer_offsets WHERE topic = %s",
                               (settings.topic(PRICED),))
            return rows[0][0] == len(events)

        await poll(all_consumed, timeout=60, what="every priced event's offset stored")
    finally:
        for proc in (a, b):
            if proc is not None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait(timeout=30)
    assert await query(settings.database_url, 'SELECT count(*), sum(spend) FROM "LiteLLM_SpendLogs"') == [(3000, total)]
    assert await query(settings.database_url, 'SELECT sum(spend) FROM "LiteLLM_VerificationToken"') == [(total,)]
    assert await query(settings.database_url, 'SELECT sum(spend) FROM "LiteLLM_DailyTeamSpend"') == [(total,)]
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        assert [str(d) for d in await check_schema(conn)] == []


async def _logged(path: Path, text: str) -> bool:
    return path.exists() and text in path.read_text(errors="replace")
