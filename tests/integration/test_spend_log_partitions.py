"""Spend logs partitioned by UTC day (migration 0009): the ledger makes each day's partition (and
tomorrow's) as it writes, and a row written by anything else for a day without one waits in the
default partition until that day's partition is made."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from tests.fixtures.ledger_support import InProcessLedger, priced, produce, query, wait_for_logs


async def test_the_ledger_writes_each_log_into_its_days_partition_and_makes_tomorrows(settings):
    """Logs of two days land in their two day partitions; tomorrow's partition exists already."""
    day_one = datetime(2025, 3, 30, 23, 59, 59, 999000, tzinfo=timezone.utc)
    events = [priced(request_id="late-night", at=day_one, cost="0.25"),
              priced(request_id="next-morning", at=day_one + timedelta(seconds=1), cost="0.5")]
    async with InProcessLedger(settings):
        await produce(settings, events)
        await wait_for_logs(settings.database_url, 2)
    rows = await query(settings.database_url, 'SELECT tableoid::regclass::text, request_id, spend FROM "LiteLLM_SpendLogs" ORDER BY 2')
    assert rows == [('"LiteLLM_SpendLogs_20250330"', "late-night", Decimal("0.25")),
                    ('"LiteLLM_SpendLogs_20250331"', "next-morning", Decimal("0.5"))]
    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).strftime("%Y%m%d")
    assert await query(settings.database_url, "SELECT to_regclass(%s)::text", (f'"LiteLLM_SpendLogs_{tomorrow}"',)) == [
        (f'"LiteLLM_SpendLogs_{tomorrow}"',)]


async def test_a_row_written_outside_the_ledger_moves_into_its_day_when_the_ledger_makes_it(settings):
    """A row inserted directly for a day with no partition sits in the default one, then moves into the day's."""
    await query(settings.database_url, 'INSERT INTO "LiteLLM_SpendLogs" (request_id, call_type, "startTime", "endTime", spend)'
                                       " VALUES ('by-hand', 'acompletion', '2025-02-02 08:00+00', '2025-02-02 08:00+00', 1) RETURNING 1")
    assert await query(settings.database_url, 'SELECT tableoid::regclass::text FROM "LiteLLM_SpendLogs"') == [('"LiteLLM_SpendLogs_default"',)]
    async with InProcessLedger(settings):
        await produce(settings, [priced(request_id="same-day", at=datetime(2025, 2, 2, 9, tzinfo=timezone.utc))])
        await wait_for_logs(settings.database_url, 2)
    rows = await query(settings.database_url, 'SELECT tableoid::regclass::text, request_id FROM "LiteLLM_SpendLogs" ORDER BY 2')
    assert rows == [('"LiteLLM_SpendLogs_20250202"', "by-hand"), ('"LiteLLM_SpendLogs_20250202"', "same-day")]
