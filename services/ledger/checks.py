"""Consistency checks of a ledger schema against its own spend logs, written in SQL independently
of the ingest code: every running total equals the sum of its logs in its window, and every
daily rollup row equals the sums of its logs. Used by replay (before a swap) and reconcile.

With retention (retention.py) the days before the horizon have no logs; their daily rows are final
and stand for them: a total counting from before the horizon is its logs plus the rollups of the
dropped days, and only a budget window that began inside a dropped day cannot be re-summed (its
spend is not checked)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import psycopg
from psycopg import sql

from services.ledger import entity_store
from services.ledger.entity_tables import ADMIN_TABLES
from services.ledger.retention import dropped_days, horizon_at
from services.ledger.rollup import DAILY_ENTITY, DAILY_TABLES, ENTITY_TYPES, RESETTABLE
from services.ledger.rows import ENDPOINTS
from shared.budget_windows import effective_start, next_reset

# The entity of each log, per entity type; tags come one row per distinct tag of a log.
_LOG_ENTITY = {
    "key": ("l.api_key", ""),
    "team": ("l.team_id", ""),
    "user": ('l."user"', ""),
    "customer": ("l.end_user", ""),
    "organization": ("l.organization_id", ""),
    "tag": ("tg.tag", " CROSS JOIN LATERAL (SELECT DISTINCT t AS tag FROM jsonb_array_elements_text(l.request_tags) t) tg"),
}


@dataclass(frozen=True)
class Difference:
    what: str  # "total" | "rollup" | ...
    where: str
    detail: str

    def __str__(self) -> str:
        return f"{self.what} {self.where}: {self.detail}"


def _entity_logs(entity_type: str) -> sql.Composed:
    expr, lateral = _LOG_ENTITY[entity_type]
    return sql.SQL(
        'SELECT {e} AS id, l."startTime" AS t, l.spend FROM "LiteLLM_SpendLogs" l{lat} WHERE {e} IS NOT NULL'
    ).format(e=sql.SQL(expr), lat=sql.SQL(lateral))


async def check_totals(conn: psycopg.AsyncConnection) -> list[Difference]:
    """Every key, team, user, customer and tag: spend = Σ its logs in its window, as of its
    latest log; every logged entity has a row unless it was deleted."""
    differences: list[Difference] = []
    horizon = await horizon_at(conn)
    last_reset = await entity_store.last_reset(conn)
    cur = await conn.execute("SELECT entity_type, entity_id FROM tally_deleted_entities")
    deleted = {(t, i) for t, i in await cur.fetchall()}
    for entity_type in ENTITY_TYPES:
        logs = _entity_logs(entity_type)
        cur = await conn.execute(sql.SQL("SELECT id, max(t) FROM ({}) e GROUP BY id").format(logs))
        latest: dict[str, datetime] = dict(await cur.fetchall())
        dropped = await dropped_days(conn, entity_type, horizon)
        for entity_id, (_, dropped_latest) in dropped.items():
            latest.setdefault(entity_id, dropped_latest)  # logs kept are later than any dropped
        states = {s.entity_id: s for s in await entity_store.read_states(conn, entity_type)}
        reset = last_reset if entity_type in RESETTABLE else None
        starts = {i: effective_start(s.anchor, s.duration, latest.get(i), reset) for i, s in states.items()}
        ids = sorted(starts)
        cur = await conn.execute(
            sql.SQL(
                "SELECT v.id, sum(e.spend) FROM ({}) e JOIN unnest(%s::text[], %s::timestamptz[]) AS v(id, start)"
                " ON e.id = v.id AND (v.start IS NULL OR e.t >= v.start) GROUP BY v.id"
            ).format(logs),
            (ids, [starts[i] for i in ids]),
        )
        sums: dict[str, Decimal] = dict(await cur.fetchall())
        for entity_id in sorted(set(latest) - set(states)):
            if (entity_type, entity_id) not in deleted:
                differences.append(Difference("total", f"{entity_type} {entity_id}", "has spend logs but no row"))
        for entity_id, state in sorted(states.items()):
            expected = sums.get(entity_id, Decimal(0))
            start = starts[entity_id]
            if horizon is not None and start is None:
                expected += dropped.get(entity_id, (Decimal(0), None))[0]
            checkable = horizon is None or start is None or start >= horizon
            want_as_of = latest.get(entity_id)
            if checkable and state.spend != expected:
                differences.append(Difference("total", f"{entity_type} {entity_id}", f"spend {state.spend} != sum of logs in window {expected}"))
            if state.as_of != want_as_of:
                differences.append(Difference("total", f"{entity_type} {entity_id}", f"spend_as_of {state.as_of} != latest log {want_as_of}"))
            if state.window_start != starts[entity_id]:
                differences.append(Difference("total", f"{entity_type} {entity_id}", f"window_start {state.window_start} != {starts[entity_id]}"))
            want_reset_at = next_reset(state.anchor, state.duration, want_as_of)
            if state.budget_reset_at != want_reset_at:
                differences.append(Difference("total", f"{entity_type} {entity_id}", f"budget_reset_at {state.budget_reset_at} != {want_reset_at}"))
    return differences


_SUMS = ("prompt_tokens", "completion_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "spend",
         "api_requests", "successful_requests", "failed_requests", "created_at", "updated_at")


async def check_rollups(conn: psycopg.AsyncConnection) -> list[Difference]:
    """Every daily rollup row = the sums of its logs; no row missing, none extra."""
    endpoint = sql.SQL("CASE l.call_type {} ELSE '' END").format(
        sql.SQL(" ").join(sql.SQL("WHEN {} THEN {}").format(sql.Literal(k), sql.Literal(v)) for k, v in ENDPOINTS.items())
    )
    differences: list[Difference] = []
    horizon = await horizon_at(conn)
    kept = sql.SQL(" WHERE date >= {}").format(sql.Literal(horizon.date().isoformat())) if horizon else sql.SQL("")
    for table, column in DAILY_TABLES.items():
        expr, lateral = _LOG_ENTITY[DAILY_ENTITY[table]]
        expected = sql.SQL(
            "SELECT {e} AS entity, to_char(l.\"startTime\" AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS date, l.api_key,"
            " l.model, COALESCE(l.custom_llm_provider, '') AS custom_llm_provider, {endpoint} AS endpoint,"
            " sum(l.prompt_tokens) AS prompt_tokens, sum(l.completion_tokens) AS completion_tokens,"
            " sum(l.cache_read_input_tokens) AS cache_read_input_tokens,"
            " sum(l.cache_creation_input_tokens) AS cache_creation_input_tokens, sum(l.spend) AS spend,"
            " count(*) AS api_requests, count(*) FILTER (WHERE l.status = 'success') AS successful_requests,"
            " count(*) FILTER (WHERE l.status <> 'success') AS failed_requests,"
            ' min(l."startTime") AS created_at, max(l."startTime") AS updated_at'
            ' FROM "LiteLLM_SpendLogs" l{lat} WHERE {e} IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6'
        ).format(e=sql.SQL(expr), lat=sql.SQL(lateral), endpoint=endpoint)
        keys = ("entity", "date", "api_key", "model", "custom_llm_provider", "endpoint")
        actual = sql.SQL("SELECT {col} AS entity, date, api_key, model, custom_llm_provider, endpoint, {sums} FROM {table}{kept}").format(
            col=sql.Identifier(column), sums=sql.SQL(", ").join(map(sql.Identifier, _SUMS)), table=sql.Identifier(table),
            kept=kept)
        query = sql.SQL(
            "SELECT {keys}, {pairs} FROM ({expected}) x FULL JOIN ({actual}) a USING ({using}) WHERE {differs}"
        ).format(
            keys=sql.SQL(", ").join(sql.Identifier(k) for k in keys),
            pairs=sql.SQL(", ").join(sql.SQL("x.{0}, a.{0}").format(sql.Identifier(c)) for c in _SUMS),
            expected=expected, actual=actual, using=sql.SQL(", ").join(map(sql.Identifier, keys)),
            differs=sql.SQL(" OR ").join(sql.SQL("x.{0} IS DISTINCT FROM a.{0}").format(sql.Identifier(c)) for c in _SUMS),
        )
        cur = await conn.execute(query)
        for row in await cur.fetchall():
            where = f"{table} " + "/".join(str(v) for v in row[: len(keys)])
            pairs = row[len(keys):]
            detail = ", ".join(
                f"{c} expected {pairs[2 * i]} found {pairs[2 * i + 1]}" for i, c in enumerate(_SUMS) if pairs[2 * i] != pairs[2 * i + 1]
            )
            differences.append(Difference("rollup", where, detail))
    return differences


async def check_schema(conn: psycopg.AsyncConnection) -> list[Difference]:
    return await check_totals(conn) + await check_rollups(conn)


# Tables compared row by row between two schemas (replay --verify), and columns left out.
COMPARED_TABLES: dict[str, tuple[str, ...]] = {
    "LiteLLM_SpendLogs": (),
    **{t: ("id",) for t in DAILY_TABLES},
    **{t.table: () for t in ADMIN_TABLES.values()},
    "tally_consumer_offsets": (),
    "tally_spend_resets": (),
    "tally_deleted_entities": (),
}


async def compare_schemas(conn: psycopg.AsyncConnection, live: str, rebuilt: str,
                          horizon: datetime | None = None) -> list[Difference]:
    """Every row that is in one schema and not the other (all columns, compared as text); spend
    logs only from the live `horizon` on (a rebuild has the days retention dropped)."""
    differences: list[Difference] = []
    for table, skipped in COMPARED_TABLES.items():
        row = sql.SQL("(to_jsonb(t){minus})::text").format(
            minus=sql.SQL("").join(sql.SQL(" - {}").format(sql.Literal(c)) for c in skipped))
        where = sql.SQL("")
        if table == "LiteLLM_SpendLogs" and horizon is not None:
            where = sql.SQL(' WHERE t."startTime" >= {}').format(sql.Literal(horizon))
        for name, a, b in (("only in live", live, rebuilt), ("only in rebuild", rebuilt, live)):
            cur = await conn.execute(
                sql.SQL("SELECT {row} FROM {a}.{t} t{w} EXCEPT ALL SELECT {row} FROM {b}.{t} t{w} ORDER BY 1").format(
                    row=row, w=where, a=sql.Identifier(a), b=sql.Identifier(b), t=sql.Identifier(table))
            )
            for (text,) in await cur.fetchall():
                differences.append(Difference(name, table, text))
    return differences
