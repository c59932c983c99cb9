"""Budget windows, spend resets and deletions, and replay: a rebuild from the topics equals the
live tables row for row."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import psycopg

from services.ledger.checks import compare_schemas
from services.ledger.replay import replay_command
from services.ledger.settings import LedgerSettings
from shared.events import EntityChanged
from tests.fixtures.ledger_support import (
    T0, InProcessLedger, key_changed, key_hash, poll, priced, produce, query, spend_reset, wait_for_logs,
)


def _m(minutes: int):
    return T0 + timedelta(minutes=minutes)


async def _history(settings) -> None:
    """Keys with hourly and half-hourly budgets, a team with a daily one, a deleted key, a reset."""
    await produce(settings, [
        key_changed("sk-w", at=T0, created_at=T0.isoformat(), budget_duration="1h", max_budget=10, team_id="team-w"),
        EntityChanged(entity_type="team", entity_id="team-w", state={"budget_duration": "1d", "team_alias": "W"}, occurred_at=T0),
        key_changed("sk-del", at=T0),
        priced(request_id="w1", key="sk-w", team="team-w", cost="1.0", at=_m(10)),
        priced(request_id="w2", key="sk-w", team="team-w", cost="2.0", at=_m(50)),
        priced(request_id="w3", key="sk-w", team="team-w", cost="4.0", at=_m(70)),
        EntityChanged(entity_type="key", entity_id=key_hash("sk-del"), deleted=True, occurred_at=_m(30)),
        priced(request_id="d1", key="sk-del", team="team-w", cost="0.5", at=_m(40)),
        spend_reset(_m(75)),
        priced(request_id="w4", key="sk-w", team="team-w", cost="8.0", at=_m(80)),
        priced(request_id="l1", key="sk-late", team=None, cost="1", at=_m(5)),
        priced(request_id="l2", key="sk-late", team=None, cost="2", at=_m(100)),
        key_changed("sk-late", at=_m(1), created_at=T0.isoformat(), budget_duration="30m"),
    ])


async def _settled(settings) -> None:
    await wait_for_logs(settings.database_url, 7)

    async def admin_done() -> bool:
        rows = await query(settings.database_url, 'SELECT budget_duration FROM "LiteLLM_VerificationToken" WHERE token = %s',
                           (key_hash("sk-late"),))
        resets = await query(settings.database_url, "SELECT count(*) FROM tally_spend_resets")
        return rows == [("30m",)] and resets[0][0] == 1

    await poll(admin_done, what="admin events applied")


async def test_budget_windows_resets_and_deletions_follow_event_times(settings):
    """Spend counts from the later of the window start and the last reset; users are not reset; deleted keys stay deleted."""
    await _history(settings)
    async with InProcessLedger(settings, batch_max_events=3):
        await _settled(settings)
    keys = {t: (s, w, a) for t, s, w, a in await query(
        settings.database_url, 'SELECT token, spend, window_start, budget_reset_at FROM "LiteLLM_VerificationToken"')}
    assert keys == {
        key_hash("sk-w"): (Decimal("8.0"), _m(75), _m(120)),
        key_hash("sk-late"): (Decimal("2"), _m(90), _m(120)),
    }
    teams = await query(settings.database_url, 'SELECT team_id, spend, window_start FROM "LiteLLM_TeamTable"')
    assert teams == [("team-w", Decimal("8.0"), _m(75))]
    users = await query(settings.database_url, 'SELECT user_id, spend FROM "LiteLLM_UserTable"')
    assert users == [("user-a", Decimal("18.5"))]


async def test_replay_into_an_empty_schema_gives_identical_rows_and_totals(settings):
    """replay --verify finds no difference, and replay swaps in a rebuild equal to the old tables row for row."""
    await _history(settings)
    async with InProcessLedger(settings, batch_max_events=2):
        await _settled(settings)
    ledger_settings = LedgerSettings(**settings.model_dump())
    assert await replay_command(ledger_settings, verify=True, progress=False) == 0
    before = await query(settings.database_url, 'SELECT token, spend, window_start FROM "LiteLLM_VerificationToken" ORDER BY 1')
    assert await replay_command(ledger_settings, verify=False, progress=False) == 0
    after = await query(settings.database_url, 'SELECT token, spend, window_start FROM "LiteLLM_VerificationToken" ORDER BY 1')
    assert after == before
    backups = await query(settings.database_url, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tally_backup_%%'")
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        assert [str(d) for d in await compare_schemas(conn, "public", backups[0][0])] == []


async def test_replay_verify_reports_a_tampered_total(settings):
    """A total edited by hand is printed as a difference and the exit status is 1."""
    await _history(settings)
    async with InProcessLedger(settings):
        await _settled(settings)
    await query(settings.database_url, """UPDATE "LiteLLM_TeamTable" SET spend = spend + 0.01 RETURNING 1""")
    assert await replay_command(LedgerSettings(**settings.model_dump()), verify=True, progress=False) == 1
