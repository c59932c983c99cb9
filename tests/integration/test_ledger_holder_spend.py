"""The ledger's per-holder spend (tally_holder_spend): each budget lease holder's calls counted once
per entity and budget window, in the batch's transaction, and rebuilt by replay."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import psycopg

from services.ledger.holder_spend import prune_ended
from services.ledger.replay import replay_command
from services.ledger.settings import LedgerSettings
from shared.migrations import migrate
from tests.fixtures.ledger_support import (
    T0, InProcessLedger, key_changed, key_hash, poll, priced, produce, query, wait_for_logs,
)

NO_WINDOW = datetime(1, 1, 1, tzinfo=timezone.utc)
A, B = "host:4000/0/aaaa", "host:4000/1/bbbb"


async def key_with_hourly_budget(settings, key: str) -> None:
    """The key's EntityChanged (an hourly budget from T0), applied before any of its calls is read."""
    await produce(settings, [key_changed(key, at=T0, created_at=T0.isoformat(), budget_duration="1h", max_budget=10)])
    async with InProcessLedger(settings):
        async def applied() -> bool:
            rows = await query(settings.database_url, 'SELECT budget_duration FROM "LiteLLM_VerificationToken" WHERE token = %s',
                               (key_hash(key),))
            return rows == [("1h",)]

        await poll(applied, what="the key's budget applied")


async def holder_rows(database_url: str) -> dict[tuple[str, str, datetime, str], Decimal]:
    rows = await query(database_url, "SELECT entity_type, entity_id, window_start, holder, spend FROM tally_holder_spend")
    return {(t, i, w, h): s for t, i, w, h, s in rows}


async def test_each_holders_calls_are_counted_once_per_entity_and_window(settings):
    """Two holders' calls, one call without a holder, a duplicate in a later batch: exact sums per holder and entity."""
    first = priced(request_id="h1", cost="0.25", lease_holder=A)
    await produce(settings, [first, priced(request_id="h2", cost="0.5", lease_holder=A),
                             priced(request_id="h3", cost="2", lease_holder=B, end_user=None, user=None),
                             priced(request_id="h4", cost="8")])
    async with InProcessLedger(settings, batch_max_events=2):
        await wait_for_logs(settings.database_url, 4)
        await produce(settings, [first, priced(request_id="h5", cost="0.125", lease_holder=A)])
        await wait_for_logs(settings.database_url, 5)
    key, team = key_hash("sk-a"), "team-a"
    assert await holder_rows(settings.database_url) == {
        ("key", key, NO_WINDOW, A): Decimal("0.875"), ("key", key, NO_WINDOW, B): Decimal("2"),
        ("team", team, NO_WINDOW, A): Decimal("0.875"), ("team", team, NO_WINDOW, B): Decimal("2"),
        ("user", "user-a", NO_WINDOW, A): Decimal("0.875"), ("customer", "cust-a", NO_WINDOW, A): Decimal("0.875"),
    }


async def test_a_holders_spend_is_counted_in_the_window_the_leases_name(settings):
    """A key with an hourly budget: calls at :10 and :70 count in the windows starting at T0 and T0 + 1 h, ending an hour later."""
    await key_with_hourly_budget(settings, "sk-h")
    await produce(settings, [priced(request_id="w1", key="sk-h", team=None, user=None, end_user=None, cost="1",
                                    at=T0 + timedelta(minutes=10), lease_holder=A)])
    async with InProcessLedger(settings, batch_max_events=1):
        await wait_for_logs(settings.database_url, 1)
        await produce(settings, [priced(request_id="w2", key="sk-h", team=None, user=None, end_user=None, cost="3",
                                        at=T0 + timedelta(minutes=70), lease_holder=A)])
        await wait_for_logs(settings.database_url, 2)
    rows = await query(settings.database_url, "SELECT window_start, window_end, spend FROM tally_holder_spend"
                                              " WHERE entity_type = 'key' AND entity_id = %s ORDER BY 1", (key_hash("sk-h"),))
    hour = timedelta(hours=1)
    assert rows == [(T0, T0 + hour, Decimal("1")), (T0 + hour, T0 + 2 * hour, Decimal("3"))]


async def test_in_a_batch_where_a_window_begins_only_the_logs_from_its_start_count(settings):
    """One batch with calls at :10, :70 and :80 of an hourly budget: only the two of the window it ends in count there (3 + 5)."""
    await key_with_hourly_budget(settings, "sk-m")
    await produce(settings, [priced(request_id=f"m{minute}", key="sk-m", team=None, user=None, end_user=None, cost=cost,
                                    at=T0 + timedelta(minutes=minute), lease_holder=A)
                             for minute, cost in ((10, "1"), (70, "3"), (80, "5"))])
    async with InProcessLedger(settings):
        await wait_for_logs(settings.database_url, 3)
    hour = timedelta(hours=1)
    assert await holder_rows(settings.database_url) == {("key", key_hash("sk-m"), T0 + hour, A): Decimal("8")}


async def test_replay_rebuilds_the_holders_spend_of_the_current_windows(settings):
    """After replay (a fresh schema filled from the topics and swapped in) the per-holder rows are the same."""
    await produce(settings, [priced(request_id=f"r{i}", cost="0.5", lease_holder=(A, B)[i % 2]) for i in range(6)])
    async with InProcessLedger(settings, batch_max_events=4):
        await wait_for_logs(settings.database_url, 6)

        async def counted() -> bool:
            return len(await holder_rows(settings.database_url)) == 8

        await poll(counted, what="the holders' spend counted")
    before = await holder_rows(settings.database_url)
    assert before[("key", key_hash("sk-a"), NO_WINDOW, A)] == Decimal("1.5")
    assert await replay_command(LedgerSettings(**settings.model_dump()), verify=False, progress=False) == 0
    assert await holder_rows(settings.database_url) == before


async def test_rows_of_windows_over_an_hour_past_are_pruned(settings):
    """A window that ended 2 h ago goes; one that ended 30 min ago and one without an end stay."""
    await migrate(settings.database_url)
    now = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
    ended_long_ago, ended_lately = now - timedelta(hours=3), now - timedelta(hours=1, minutes=30)
    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as conn:
        for start, end, spend in ((ended_long_ago, now - timedelta(hours=2), "1"),
                                  (ended_lately, now - timedelta(minutes=30), "2"), (NO_WINDOW, None, "4")):
            await conn.execute("INSERT INTO tally_holder_spend (entity_type, entity_id, window_start, holder, spend, window_end)"
                               " VALUES ('key', 'k', %s, %s, %s, %s)", (start, A, Decimal(spend), end))
        assert await prune_ended(conn, now) == 1
        assert await prune_ended(conn, now) == 0
    assert await holder_rows(settings.database_url) == {
        ("key", "k", ended_lately, A): Decimal("2"), ("key", "k", NO_WINDOW, A): Decimal("4")}
