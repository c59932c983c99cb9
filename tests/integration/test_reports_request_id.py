"""Request-id lookups (/spend/logs?request_id=, /spend/logs/ui?request_id=) reuse one prepared
generic plan over every daily partition: they answer exactly what a freshly planned query answers,
and stay right when a retention drop or a replay changes the partitions under the cached plan."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

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
from tests.fixtures.ledger_support import InProcessLedger, key_hash, priced, produce, wait_for_logs
from tests.fixtures.reports_support import CONFIG, MASTER, bearer, reports_settings_for

DAY_1, DAY_2, DAY_3 = (datetime(2025, 3, d, 12, tzinfo=timezone.utc) for d in (1, 2, 3))
# request id → (key, start, spend)
LOGS = {"d1-a": ("sk-a", DAY_1, "1.5"), "d1-b": ("sk-b", DAY_1, "0.25"), "d2-a": ("sk-a", DAY_2, "2"),
        "d3-a": ("sk-b", DAY_3, "0.125")}
# More calls than psycopg's and Postgres' thresholds (5 each): a reused plan is what is tested.
REPEATS = 12
FRESHLY_PLANNED = f'SELECT {_LOG_COLUMNS} FROM "LiteLLM_SpendLogs" WHERE request_id = %(rid)s'


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


async def test_a_lookup_answers_exactly_what_a_freshly_planned_query_answers(store):
    """Every id's row, column for column, equals the unprepared query's; an unknown id has none."""
    found = await _lookups(store)
    for rid in found:
        assert found[rid] == await store._rows(FRESHLY_PLANNED, {"rid": rid}), rid
    assert {rid: _brief(rows) for rid, rows in found.items()} == {
        **{rid: [(rid, key_hash(key), Decimal(cost), at)] for rid, (key, at, cost) in LOGS.items()}, "never-logged": []}


async def test_every_lookup_runs_the_one_generic_plan_none_is_planned_afresh(store):
    """On the pool's connection the lookup is prepared once and run with its generic plan every time."""
    await _lookups(store)
    async with store.pool.connection() as conn:
        cur = await conn.execute("SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                                 " WHERE statement LIKE %s", ('%"LiteLLM_SpendLogs" WHERE request_id = $1',))
        assert await cur.fetchall() == [(REPEATS * (len(LOGS) + 1), 0)]


async def test_a_key_sees_only_its_own_request_ids(store):
    """With the caller's own key, another key's request id finds nothing, its own finds its row."""
    found = await _lookups(store, own_key=key_hash("sk-a"))
    assert {rid: [r["request_id"] for r in rows] for rid, rows in found.items()} == {
        "d1-a": ["d1-a"], "d1-b": [], "d2-a": ["d2-a"], "d3-a": [], "never-logged": []}


async def test_after_a_retention_drop_the_dropped_days_ids_are_gone_and_the_rest_unchanged(logged, store):
    """A plan cached before the drop is not used after it: dropped days answer nothing, kept days the same row."""
    before = await _lookups(store)
    async with db.pool(logged.database_url, max_size=1) as pool, pool.connection() as conn:
        assert await drop_before(conn, date(2025, 3, 3)) == ["LiteLLM_SpendLogs_20250301", "LiteLLM_SpendLogs_20250302"]
    assert await _lookups(store) == {"d1-a": [], "d1-b": [], "d2-a": [], "d3-a": before["d3-a"], "never-logged": []}


async def test_after_a_replay_the_lookups_read_the_swapped_in_tables(logged, store):
    """A replay swaps schemas under a cached plan: the same rows come back, and a log written after it is found."""
    before = await _lookups(store)
    assert await replay_command(LedgerSettings(**logged.model_dump()), verify=False, progress=False) == 0
    assert await _lookups(store) == before
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
