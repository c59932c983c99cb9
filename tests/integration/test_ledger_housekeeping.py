"""The ledger's periodic database rounds (services/ledger/housekeeping.py): a round the database
fails is logged and the next one still runs, on a real pool."""

from __future__ import annotations

import asyncio

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool

from services.ledger.housekeeping import every
from tests.fixtures.polling import eventually_async


async def test_a_failed_round_is_logged_and_the_next_one_runs(settings):
    """Round 1 fails in Postgres (a division by zero), round 2 reads 1: one warning naming the error and its fields."""
    answers: list[int] = []
    calls = 0

    async def round_(conn: psycopg.AsyncConnection) -> None:
        nonlocal calls
        calls += 1
        cur = await conn.execute("SELECT 1 / %s", (0 if calls == 1 else 1,))
        answers.append((await cur.fetchone())[0])

    async with AsyncConnectionPool(settings.database_url, min_size=1, max_size=1, open=False) as pool:
        with structlog.testing.capture_logs() as logs:
            task = asyncio.create_task(every(0.01, pool, round_, failed="round_failed", fields=lambda: {"horizon": "2026-12-01"}))
            try:
                await eventually_async(lambda: len(answers) >= 1, 10, "a round after the failed one")
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    assert answers[0] == 1
    warnings = [entry for entry in logs if entry["event"] == "round_failed"]
    assert len(warnings) == 1
    assert warnings[0]["horizon"] == "2026-12-01"
    assert warnings[0]["error"].startswith("DivisionByZero: division by zero")
