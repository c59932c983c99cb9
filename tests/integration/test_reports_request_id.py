"""Request-id lookups (/spend/logs?request_id=, /spend/logs/ui?request_id=) go through the
request's days (tally_request_days, migration 0013, filled by a trigger in the rows' own
transaction) to read only those days' partitions: they answer exactly what a probe of every day
answers, and stay exact after a retention drop, a replay, a move out of the default partition, and
for logs kept before the migration."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.ledger.replay import replay_command
from services.ledger.retention import drop_before
from services.ledger.settings import LedgerSettings
from services.reports.app import build_app
from services.reports.queries.spend import _LOG_COLUMNS
from services.reports.store import ReportsStore
from shared import db
from shared.config import parse_config
from shared.migrations import MIGRATIONS_DIR, migrate
from tests.fixtures.ledger_support import InProcessLedger, key_hash, priced, produce, query, wait_for_logs
from tests.fixtures.reports_support import CONFIG, MASTER, bearer, reports_settings_for

DAY_1, DAY_2, DAY_3 = (datetime(2025, 3, d, 12, tzinfo=timezone.utc) for d in (1, 2, 3))
# request id → (key, start, spend)
LOGS = {"d1-a": ("sk-a", DAY_1, "1.5"), "d1-b": ("sk-b", DAY_1, "0.25"), "d2-a": ("sk-a", DAY_2, "2"),
        "d3-a": ("sk-b", DAY_3, "0.125")}
# More calls than psycopg's and Postgres' thresholds (5 each): cached plans are met too.
REPEATS = 12
EVERY_DAY = f'SELECT {_LOG_COLUMNS} FROM "LiteLLM_SpendLogs" WHERE request_id = %(rid)s'
# Each entry with the request id it was made for (an entry holds the id's hash).
ENTRIES = ("SELECT l.request_id, d.day FROM tally_request_days d JOIN (SELECT DISTINCT request_id FROM \"LiteLLM_SpendLogs\""
           " UNION VALUES ('d1-a'), ('d1-b'), ('d2-a'), ('d3-a')) l ON d.request_key = hashtextextended(l.request_id, 0)"
           " ORDER BY 1, 2")


@pytest.fixture
async def logged(settings) -> Any:
    """Three days of logs written by the ledger itself (so each day has its partition)."""
    await produce(settings, [priced(request_id=rid, key=key, at=at, cost=cost) for rid, (key, at, cost) in LOGS.items()])
    async with InProcessLedger(settings):
        await wait_for_logs(settings.database_url, len(LOGS))
    return settings


@pytest.fixture
async def store(logged) -> AsyncIterator[ReportsStore]:
    """The reports' queries on one pooled connection, so every lookup meets the same cached plan."""
    async with db.pool(logged.database_url, max_size=1) as pool:
        yield ReportsStore(pool)


@pytest.fixture
async def client(logged, kafka_bootstrap) -> AsyncIterator[TestClient]:
    app = build_app(reports_settings_for(logged.database_url, kafka_bootstrap), parse_config(CONFIG, {}), None)
    async with TestClient(TestServer(app)) as client:
        yield client


async def _lookups(store: ReportsStore, own_key: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Each request id (and one never logged) looked up REPEATS times; every answer must agree."""
    found = {}
    for rid in (*LOGS, "never-logged"):
        answers = [await store.log_by_request_id(rid, own_key) for _ in range(REPEATS)]
        assert all(a == answers[0] for a in answers), rid
        found[rid] = answers[0]
    return found


def _brief(rows: list[dict[str, Any]]) -> list[tuple[str, str, Decimal, datetime]]:
    return [(r["request_id"], r["api_key"], r["spend"], r["startTime"]) for r in rows]


async def _get(client: TestClient, path: str, **params: str) -> Any:
    response = await client.get(path, params=params, headers=bearer(MASTER))
    text = await response.text()
    assert response.status == 200, text
    return json.loads(text, parse_float=Decimal)


async def test_a_lookup_answers_exactly_what_a_probe_of_every_day_answers(store):
    """Every id's row, column for column, equals the every-partition query's; an unknown id has none."""
    found = await _lookups(store)
    for rid in found:
        assert found[rid] == await store._rows(EVERY_DAY, {"rid": rid}), rid
    assert {rid: _brief(rows) for rid, rows in found.items()} == {
        **{rid: [(rid, key_hash(key), Decimal(cost), at)] for rid, (key, at, cost) in LOGS.items()}, "never-logged": []}


async def test_each_request_id_has_its_day_once_and_its_days_are_read_with_one_generic_plan(logged, store):
    """The trigger wrote one entry per logged (request id, day); the days query is prepared once and never planned afresh."""
    assert await query(logged.database_url, ENTRIES) == [(rid, at.date()) for rid, (_, at, _) in LOGS.items()]
    await _lookups(store)
    async with store.pool.connection() as conn:
        cur = await conn.execute("SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                                 " WHERE statement LIKE %s", ("%FROM tally_request_days WHERE request_key = hashtextextended($1, 0)",))
        assert await cur.fetchall() == [(REPEATS * (len(LOGS) + 1), 0)]


async def test_a_key_sees_only_its_own_request_ids(store):
    """With the caller's own key, another key's request id finds nothing, its own finds its row."""
    found = await _lookups(store, own_key=key_hash("sk-a"))
    assert {rid: [r["request_id"] for r in rows] for rid, rows in found.items()} == {
        "d1-a": ["d1-a"], "d1-b": [], "d2-a": ["d2-a"], "d3-a": [], "never-logged": []}


async def test_after_a_retention_drop_the_dropped_days_ids_are_gone_and_the_rest_unchanged(logged, store):
    """A plan cached before the drop is not used after it: dropped days answer nothing, kept days the same row."""
    before = await _lookups(store)
    assert await _drop(logged, date(2025, 3, 3)) == ["LiteLLM_SpendLogs_20250301", "LiteLLM_SpendLogs_20250302"]
    assert await _lookups(store) == {"d1-a": [], "d1-b": [], "d2-a": [], "d3-a": before["d3-a"], "never-logged": []}


async def test_a_month_of_entries_goes_whole_once_all_its_days_are_dropped(logged, store):
    """Entries stay while a day of their month is kept, and their month's partition is dropped with its last day."""
    await _drop(logged, date(2025, 3, 31))
    assert len(await query(logged.database_url, ENTRIES)) == len(LOGS)
    await _drop(logged, date(2025, 4, 1))
    assert await query(logged.database_url, ENTRIES) == []
    assert await query(logged.database_url, "SELECT to_regclass('tally_request_days_202503')") == [(None,)]
    assert all(rows == [] for rows in (await _lookups(store)).values())


async def _drop(settings, cutoff: date) -> list[str]:
    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as conn:
        return await drop_before(conn, cutoff)


async def test_after_a_replay_the_lookups_read_the_swapped_in_tables(logged, store):
    """A replay swaps schemas under a cached plan: the same rows come back, and a log written after it is found."""
    before, entries = await _lookups(store), await query(logged.database_url, ENTRIES)
    assert await replay_command(LedgerSettings(**logged.model_dump()), verify=False, progress=False) == 0
    assert await _lookups(store) == before
    assert await query(logged.database_url, ENTRIES) == entries
    await produce(logged, [priced(request_id="after-replay", key="sk-a", at=DAY_3, cost="3")])
    async with InProcessLedger(logged):
        await wait_for_logs(logged.database_url, len(LOGS) + 1)
    assert _brief(await store.log_by_request_id("after-replay", None)) == [
        ("after-replay", key_hash("sk-a"), Decimal("3"), DAY_3)]


async def test_the_routes_answer_a_request_id_over_every_day(client):
    """/spend/logs and /spend/logs/ui (any range holding the day) find the id, with LiteLLM's shapes and a total of 1."""
    for _ in range(REPEATS):
        rows = await _get(client, "/spend/logs", request_id="d2-a")
        page = await _get(client, "/spend/logs/ui", request_id="d2-a", start_date="2025-01-01", end_date="2025-03-31")
        elsewhere = await _get(client, "/spend/logs/ui", request_id="d2-a", start_date="2025-03-03", end_date="2025-03-31")
    assert [(r["request_id"], r["spend"], r["startTime"]) for r in rows] == [("d2-a", Decimal("2"), "2025-03-02T12:00:00+00:00")]
    assert ([(r["request_id"], r["spend"]) for r in page["data"]], page["total"], page["total_pages"]) == (
        [("d2-a", Decimal("2"))], 1, 1)
    assert (elsewhere["data"], elsewhere["total"]) == ([], 0)


async def test_a_log_written_before_its_day_had_a_partition_is_found_after_the_move(logged, store):
    """A row that landed in the default partition has its entry, and is found once moved into its day's partition."""
    await query(logged.database_url, 'INSERT INTO "LiteLLM_SpendLogs" (request_id, call_type, "startTime", "endTime", spend)'
                " VALUES ('stray', 'acompletion', '2025-03-20 08:00+00', '2025-03-20 08:00+00', 0.5) RETURNING 1")
    assert _brief(await store.log_by_request_id("stray", None)) == [
        ("stray", "", Decimal("0.5"), datetime(2025, 3, 20, 8, tzinfo=timezone.utc))]
    assert await query(logged.database_url, "SELECT tally_ensure_spend_log_partition('2025-03-20')") == [(True,)]
    assert await query(logged.database_url, "SELECT tableoid::regclass::text FROM \"LiteLLM_SpendLogs\" WHERE request_id = 'stray'") == [
        ('"LiteLLM_SpendLogs_20250320"',)]
    assert _brief(await store.log_by_request_id("stray", None)) == [
        ("stray", "", Decimal("0.5"), datetime(2025, 3, 20, 8, tzinfo=timezone.utc))]


async def test_the_migration_gives_every_log_kept_before_it_its_day(settings, tmp_path):
    """Logs written before migration 0013 get their entries when it runs, and are found."""
    schema = "before_request_days"
    for migration in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if int(migration.name[:4]) < 13:
            (tmp_path / migration.name).write_text(migration.read_text())
    await migrate(settings.database_url, schema=schema, directory=tmp_path)
    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as conn:
        await conn.execute(f"SET search_path TO {schema}")
        await conn.execute("SELECT tally_ensure_spend_log_partition('2025-02-28')")
        await conn.execute('INSERT INTO "LiteLLM_SpendLogs" (request_id, call_type, "startTime", "endTime", spend) VALUES'
                           " ('old-1', 'acompletion', '2025-02-28 23:59+00', '2025-02-28 23:59+00', 1),"
                           " ('old-2', 'acompletion', '2025-03-01 00:01+00', '2025-03-01 00:01+00', 2)")
    assert await migrate(settings.database_url, schema=schema) == [13]
    async with db.pool(settings.database_url, max_size=1, schema=schema) as pool:
        found = {rid: _brief(await ReportsStore(pool).log_by_request_id(rid, None)) for rid in ("old-1", "old-2")}
        async with pool.connection() as conn:
            entries = await (await conn.execute(ENTRIES)).fetchall()
    assert entries == [("old-1", date(2025, 2, 28)), ("old-2", date(2025, 3, 1))]
    assert found == {"old-1": [("old-1", "", Decimal("1"), datetime(2025, 2, 28, 23, 59, tzinfo=timezone.utc))],
                     "old-2": [("old-2", "", Decimal("2"), datetime(2025, 3, 1, 0, 1, tzinfo=timezone.utc))]}


async def test_a_request_id_logged_on_two_days_is_found_on_both(logged, store):
    """Two start times of one request id: two entries, and the lookup returns both rows, as a probe of every day does."""
    await query(logged.database_url, 'INSERT INTO "LiteLLM_SpendLogs" (request_id, call_type, "startTime", "endTime", spend)'
                " VALUES ('d1-a', 'acompletion', '2025-03-03 09:00+00', '2025-03-03 09:00+00', 7) RETURNING 1")
    assert [day for rid, day in await query(logged.database_url, ENTRIES) if rid == "d1-a"] == [date(2025, 3, 1), date(2025, 3, 3)]
    found = await store.log_by_request_id("d1-a", None)
    assert sorted((r["spend"], r["startTime"]) for r in found) == [
        (Decimal("1.5"), DAY_1), (Decimal("7"), datetime(2025, 3, 3, 9, tzinfo=timezone.utc))]
    assert sorted(map(str, found)) == sorted(map(str, await store._rows(EVERY_DAY, {"rid": "d1-a"})))
