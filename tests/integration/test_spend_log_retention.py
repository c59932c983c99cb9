"""Spend log retention (TALLY_SPEND_LOG_RETENTION_DAYS, migration 0011): whole days of logs are
dropped, the rollups and totals stay exact, a late event for a dropped day is refused, and
reconcile, replay and replay --verify treat the dropped days as dropped, not missing."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import psycopg

from services.ledger.checks import check_schema
from services.ledger.reconcile import find_differences
from services.ledger.replay import replay_command
from services.ledger.retention import drop_before
from services.ledger.settings import LedgerSettings
from shared.events import EntityChanged, encode
from shared.topics import PRICED, USAGE
from tests.fixtures.ledger_support import (InProcessLedger, key_changed, key_hash, poll, priced, produce, produce_raw, query,
                                           wait_for_logs)

DAY_1, DAY_2, DAY_3 = (datetime(2025, 3, d, 12, tzinfo=timezone.utc) for d in (1, 2, 3))
TOTALS = ('SELECT (SELECT spend FROM "LiteLLM_VerificationToken"), (SELECT spend FROM "LiteLLM_TeamTable"),'
          ' (SELECT spend FROM "LiteLLM_UserTable"), (SELECT spend FROM "LiteLLM_EndUserTable")')
KEY_ROLLUPS = 'SELECT date, spend, api_requests FROM "LiteLLM_DailyApiKeySpend" ORDER BY date'
LOG_DAYS = "SELECT DISTINCT to_char(\"startTime\" AT TIME ZONE 'UTC', 'YYYY-MM-DD') FROM \"LiteLLM_SpendLogs\" ORDER BY 1"


async def _three_days(settings) -> None:
    events = [priced(request_id="d1-a", at=DAY_1, cost="1.5"), priced(request_id="d1-b", at=DAY_1, cost="0.25"),
              priced(request_id="d2-a", at=DAY_2, cost="2"), priced(request_id="d3-a", at=DAY_3, cost="0.125")]
    await produce_raw(settings, USAGE, [encode(e.usage_event) for e in events])
    await produce(settings, events)
    async with InProcessLedger(settings):
        await wait_for_logs(settings.database_url, 4)


async def _drop(settings, cutoff: date) -> list[str]:
    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as conn:
        return await drop_before(conn, cutoff)


async def test_dropping_days_keeps_every_rollup_and_total_and_the_books_balance(settings):
    """The two days before the cut-off go whole; rollups, totals, checks and reconcile are unchanged and clean."""
    await _three_days(settings)
    rollups, totals = await query(settings.database_url, KEY_ROLLUPS), await query(settings.database_url, TOTALS)
    assert totals == [(Decimal("3.875"),) * 4]

    assert await _drop(settings, date(2025, 3, 3)) == ["LiteLLM_SpendLogs_20250301", "LiteLLM_SpendLogs_20250302"]
    assert await query(settings.database_url, LOG_DAYS) == [("2025-03-03",)]
    assert await query(settings.database_url, "SELECT to_regclass('\"LiteLLM_SpendLogs_20250301\"')") == [(None,)]
    assert await query(settings.database_url, KEY_ROLLUPS) == rollups == [
        ("2025-03-01", Decimal("1.75"), 2), ("2025-03-02", Decimal("2"), 1), ("2025-03-03", Decimal("0.125"), 1)]
    assert await query(settings.database_url, TOTALS) == totals
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        assert [str(d) for d in await check_schema(conn)] == []
    assert [str(d) for d in await find_differences(LedgerSettings(**settings.model_dump()))] == []
    assert await _drop(settings, date(2025, 3, 2)) == []  # the horizon never moves back
    assert await query(settings.database_url, "SELECT horizon FROM tally_spend_log_retention") == [(date(2025, 3, 3),)]


async def test_a_tampered_total_is_still_found_after_a_drop(settings):
    """A key total edited by hand after its earliest days were dropped fails the checks."""
    await _three_days(settings)
    await _drop(settings, date(2025, 3, 3))
    await query(settings.database_url, 'UPDATE "LiteLLM_VerificationToken" SET spend = spend + 1 RETURNING 1')
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        assert [d.what for d in await check_schema(conn)] == ["total"]


async def test_a_late_event_for_a_dropped_day_is_dead_lettered_and_changes_nothing(settings):
    """An event starting before the horizon is refused whole; the kept day's event of the same batch commits."""
    await _three_days(settings)
    await _drop(settings, date(2025, 3, 3))
    rollups, totals = await query(settings.database_url, KEY_ROLLUPS), await query(settings.database_url, TOTALS)
    late, on_time = priced(request_id="late", at=DAY_2, cost="9"), priced(request_id="on-time", at=DAY_3, cost="1")
    await produce_raw(settings, USAGE, [encode(late.usage_event), encode(on_time.usage_event)])
    await produce(settings, [late, on_time])
    async with InProcessLedger(settings):
        await wait_for_logs(settings.database_url, 2)
        await poll(lambda: _offsets_past(settings, 6), what="both events consumed")
    assert await query(settings.database_url, LOG_DAYS) == [("2025-03-03",)]
    assert await query(settings.database_url, "SELECT to_regclass('\"LiteLLM_SpendLogs_20250302\"')") == [(None,)]
    assert await query(settings.database_url, KEY_ROLLUPS) == rollups[:2] + [("2025-03-03", Decimal("1.125"), 2)]
    assert await query(settings.database_url, TOTALS) == [(totals[0][0] + 1,) * 4]
    found = [str(d) for d in await find_differences(LedgerSettings(**settings.model_dump()))]
    assert found == ['dead-lettered by ledger late: priced 9, not in "LiteLLM_SpendLogs"']


async def test_replay_verify_is_clean_and_a_replay_keeps_the_dropped_days_dropped(settings):
    """replay --verify finds no difference after a drop; replay swaps in the same rollups and totals and no log before the horizon."""
    await _three_days(settings)
    await _drop(settings, date(2025, 3, 2))
    rollups, totals = await query(settings.database_url, KEY_ROLLUPS), await query(settings.database_url, TOTALS)
    ledger_settings = LedgerSettings(**settings.model_dump())
    assert await replay_command(ledger_settings, verify=True, progress=False) == 0
    assert await replay_command(ledger_settings, verify=False, progress=False) == 0
    assert await query(settings.database_url, LOG_DAYS) == [("2025-03-02",), ("2025-03-03",)]
    assert await query(settings.database_url, KEY_ROLLUPS) == rollups
    assert await query(settings.database_url, TOTALS) == totals
    assert await query(settings.database_url, "SELECT horizon FROM tally_spend_log_retention") == [(date(2025, 3, 2),)]


async def _offsets_past(settings, events: int) -> bool:
    rows = await query(settings.database_url, "SELECT coalesce(sum(next_offset), 0) FROM tally_consumer_offsets WHERE topic = %s",
                       (settings.topic(PRICED),))
    return rows[0][0] >= events


async def test_a_total_summed_again_after_a_drop_still_counts_the_dropped_days(settings):
    """A key re-created after its first days were dropped is summed from its logs plus the dropped days' rollups."""
    await _three_days(settings)
    await _drop(settings, date(2025, 3, 3))
    deleted = EntityChanged(entity_type="key", entity_id=key_hash("sk-a"), state={}, occurred_at=DAY_3, deleted=True)
    await produce(settings, [deleted, key_changed("sk-a", at=DAY_3, key_alias="again")])
    async with InProcessLedger(settings):
        await poll(lambda: _alias_is(settings, "again"), what="the key re-created")
    assert await query(settings.database_url, 'SELECT spend, spend_as_of FROM "LiteLLM_VerificationToken"') == [
        (Decimal("3.875"), DAY_3)]
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        assert [str(d) for d in await check_schema(conn)] == []


async def _alias_is(settings, alias: str) -> bool:
    return await query(settings.database_url, 'SELECT key_alias FROM "LiteLLM_VerificationToken"') == [(alias,)]
