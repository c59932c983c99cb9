"""Faults under load: the ledger SIGKILLed mid-batch again and again, and Postgres restarted. After
each, the logs, rollups and totals equal exactly what the priced topic holds."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from services.ledger.checks import check_schema
from shared.settings import env_bool
from tests.fixtures.ledger_support import InProcessLedger, T0, count_logs, poll, priced, produce, query, wait_for_logs
from tests.fixtures.stack import free_port

ROOT = Path(__file__).resolve().parents[2]


def _start_ledger(settings, port: int) -> subprocess.Popen:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers, "DATABASE_URL": settings.database_url,
           "TALLY_TOPIC_PREFIX": settings.topic_prefix, "LEDGER_PORT": str(port), "LEDGER_BATCH_MAX_EVENTS": "1000"}
    env.pop("TALLY_CONFIG", None)
    return subprocess.Popen([sys.executable, "-m", "services.ledger"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _load(count: int, seed: int) -> tuple[list, Decimal]:
    """`count` distinct priced events over 20 keys, 5 teams and 7 tags, plus 10% re-sent duplicates."""
    rng = random.Random(seed)
    events = [
        priced(request_id=f"load-{seed}-{i}", key=f"sk-{i % 20}", team=f"team-{i % 5}", user=f"user-{i % 3}",
               end_user=f"cust-{i % 11}", tags=(f"tag-{i % 7}",), cost=f"0.{rng.randrange(10**9):09d}",
               at=T0.replace(hour=i % 24))
        for i in range(count)
    ]
    total = sum((e.cost.total for e in events), Decimal(0))
    duplicates = rng.sample(events, count // 10)
    return events + duplicates, total


async def _assert_books_balance(settings, expected_rows: int, expected_total: Decimal) -> None:
    assert await count_logs(settings.database_url) == expected_rows
    [(logged,)] = await query(settings.database_url, 'SELECT sum(spend) FROM "LiteLLM_SpendLogs"')
    assert logged == expected_total
    [(keys,)] = await query(settings.database_url, 'SELECT sum(spend) FROM "LiteLLM_VerificationToken"')
    assert keys == expected_total
    [(daily,)] = await query(settings.database_url, 'SELECT sum(spend) FROM "LiteLLM_DailyTeamSpend"')
    assert daily == expected_total
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        assert [str(d) for d in await check_schema(conn)] == []


# make test: 3 kills over 15,000 events; make faults-full: 5 over 30,000.
FULL = env_bool(os.environ, "TALLY_FAULTS_FULL", False) or env_bool(os.environ, "TALLY_FAULTS_ALL", False)
SIGKILL_EVENTS, SIGKILLS = (30000, 5) if FULL else (15000, 3)


async def test_sigkill_mid_batch_several_times_loses_and_doubles_nothing(settings):
    """Several SIGKILLs of `python -m services.ledger` under load; after restart the books equal the topic exactly."""
    events, total = _load(SIGKILL_EVENTS, seed=1)
    port = free_port()
    producer = asyncio.create_task(_produce_in_chunks(settings, events, chunk=2000))
    proc = _start_ledger(settings, port)
    try:
        for kill in range(SIGKILLS):
            seen = await count_logs(settings.database_url)
            await wait_for_logs(settings.database_url, seen + 1000 + kill * 500, timeout=120)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            proc = _start_ledger(settings, port)
        await producer
        await wait_for_logs(settings.database_url, SIGKILL_EVENTS, timeout=180)

        async def all_consumed() -> bool:
            rows = await query(settings.database_url, "SELECT sum(next_offset) FROM tally_consumer_offsets WHERE topic LIKE '%%priced.v1'")
            return rows[0][0] == len(events)

        await poll(all_consumed, timeout=120, what="every priced event consumed")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    await _assert_books_balance(settings, SIGKILL_EVENTS, total)


async def _produce_in_chunks(settings, events: list, chunk: int) -> None:
    for start in range(0, len(events), chunk):
        await produce(settings, events[start:start + chunk])


def _restart_postgres() -> None:
    # pg_ctlcluster sometimes reports a failed start while the server is in fact up: the test
    # polls the database afterwards instead of trusting the exit status.
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", "15", "main", "restart"], timeout=120,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.postgres_restart
async def test_postgres_restart_under_load_the_ledger_waits_and_resumes(settings):
    """Postgres restarted while events flow: the ledger retries with backoff, then nothing is lost or doubled.
    (Restarts the shared server for a few seconds: select with -m postgres_restart or deselect with -m 'not postgres_restart'.)"""
    events, total = _load(20000, seed=2)
    async with InProcessLedger(settings, batch_max_events=1000) as ledger:
        producer = asyncio.create_task(_produce_in_chunks(settings, events, chunk=1000))
        await wait_for_logs(settings.database_url, 3000, timeout=120)
        before_restart = await count_logs(settings.database_url)
        await asyncio.get_running_loop().run_in_executor(None, _restart_postgres)
        await producer

        async def all_in() -> bool:
            try:
                return await count_logs(settings.database_url) == 20000
            except psycopg.OperationalError:
                return False

        await poll(all_in, timeout=180, what="all 20000 rows after the restart")
        assert before_restart < 20000  # the restart really came in the middle of the load
        ledger.check()
    await _assert_books_balance(settings, 20000, total)
