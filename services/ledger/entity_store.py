"""Entity rows in Postgres: admin changes, spend resets, and the running totals' read and write.

Rows are locked in sorted id order (SELECT … ORDER BY id FOR UPDATE) before any update, so ledger
transactions touching overlapping entities queue instead of deadlocking."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from services.ledger.entity_tables import ADMIN_TABLES, ENTITY_TABLES, STATE_TABLES, AdminChange, admin_change
from services.ledger.retention import dropped_days, horizon_at
from services.ledger.rollup import RESETTABLE, EntityState, recomputed
from shared.budget_windows import BadDuration, parse_duration
from shared.events import EntityChanged, SpendReset

_STATE_COLUMNS = "{id}, created_at, budget_duration, spend, window_start, spend_as_of, budget_reset_at"


def _duration(text: str | None) -> Any:
    try:
        return parse_duration(text)
    except BadDuration:
        return None  # refused when it arrived; a row can only hold a valid one


def _state(entity_type: str, row: Sequence[Any]) -> EntityState:
    entity_id, created, duration, spend, start, as_of, reset_at = row
    return EntityState(entity_type, entity_id, created, _duration(duration), spend, start, as_of, reset_at)


def _select_states(entity_type: str, where: sql.Composable, lock: bool) -> sql.Composed:
    table = ENTITY_TABLES[entity_type]
    return sql.SQL("SELECT {cols} FROM {table} WHERE {where} ORDER BY {id}{lock}").format(
        cols=sql.SQL(_STATE_COLUMNS).format(id=sql.Identifier(table.id_column)),
        table=sql.Identifier(table.table), where=where, id=sql.Identifier(table.id_column),
        lock=sql.SQL(" FOR UPDATE" if lock else ""),
    )


async def read_states(conn: psycopg.AsyncConnection, entity_type: str) -> list[EntityState]:
    cur = await conn.execute(_select_states(entity_type, sql.SQL("TRUE"), lock=False))
    return [_state(entity_type, r) for r in await cur.fetchall()]


LAST_RESET = "SELECT max(occurred_at) FROM tally_spend_resets"


async def last_reset(conn: psycopg.AsyncConnection) -> datetime | None:
    cur = await conn.execute(LAST_RESET)
    row = await cur.fetchone()
    return row[0] if row else None


async def queue_lock_for_spend(conn: psycopg.AsyncConnection, ids: dict[str, sql.Composable]) -> psycopg.AsyncCursor[Any]:
    """Create the missing rows (not for deleted entities) of the ids each query yields, then lock
    them all, types in sorted order and ids in order; two statements in all, sent without waiting
    (pipeline mode). The returned cursor's rows are (entity_type, *state): see `states_of`."""
    types = sorted(ids)
    creates = [
        sql.SQL(
            "{name} AS (INSERT INTO {table} ({id}) SELECT v.id FROM ({ids}) AS v(id)"
            " WHERE NOT EXISTS (SELECT 1 FROM tally_deleted_entities d WHERE d.entity_type = {type} AND d.entity_id = v.id)"
            " ORDER BY v.id ON CONFLICT ({id}) DO NOTHING)"
        ).format(name=sql.Identifier(f"new_{t}"), table=sql.Identifier(ENTITY_TABLES[t].table),
                 id=sql.Identifier(ENTITY_TABLES[t].id_column), ids=ids[t], type=sql.Literal(t))
        for t in types
    ]
    await conn.execute(sql.SQL("WITH {} SELECT 1").format(sql.SQL(", ").join(creates)))
    # MATERIALIZED: each lock runs whole, in the order the UNION ALL reads them.
    locks = [
        sql.SQL("{name} AS MATERIALIZED ({select})").format(
            name=sql.Identifier(f"lock_{t}"),
            select=_select_states(t, sql.SQL("{} IN ({})").format(sql.Identifier(ENTITY_TABLES[t].id_column), ids[t]), lock=True))
        for t in types
    ]
    reads = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT {}, * FROM {}").format(sql.Literal(t), sql.Identifier(f"lock_{t}")) for t in types)
    return await conn.execute(sql.SQL("WITH {} {}").format(sql.SQL(", ").join(locks), reads))


async def states_of(cur: psycopg.AsyncCursor[Any]) -> list[EntityState]:
    return [_state(r[0], r[1:]) for r in await cur.fetchall()]


async def queue_save_all_totals(conn: psycopg.AsyncConnection, states: Sequence[EntityState]) -> None:
    """save_totals of every type in one statement (one UPDATE per type, types in sorted order)."""
    types = sorted({s.entity_type for s in states})
    if not types:
        return
    updates = []
    params: list[Any] = []
    for t in types:
        mine = [s for s in states if s.entity_type == t]
        updates.append(sql.SQL("{name} AS ({update})").format(name=sql.Identifier(f"save_{t}"), update=_update_totals(t)))
        params.extend(_totals_params(mine))
    await conn.execute(sql.SQL("WITH {} SELECT 1").format(sql.SQL(", ").join(updates)), params)


def _update_totals(entity_type: str) -> sql.Composed:
    table = ENTITY_TABLES[entity_type]
    return sql.SQL(
        "UPDATE {table} AS t SET spend = v.spend, window_start = v.window_start, spend_as_of = v.as_of,"
        " budget_reset_at = v.reset_at"
        " FROM unnest(%s::text[], %s::numeric[], %s::timestamptz[], %s::timestamptz[], %s::timestamptz[])"
        " AS v(id, spend, window_start, as_of, reset_at) WHERE t.{id} = v.id"
    ).format(table=sql.Identifier(table.table), id=sql.Identifier(table.id_column))


def _totals_params(states: Sequence[EntityState]) -> list[Any]:
    return [[s.entity_id for s in states], [s.spend for s in states], [s.window_start for s in states],
            [s.as_of for s in states], [s.budget_reset_at for s in states]]


async def save_totals(conn: psycopg.AsyncConnection, entity_type: str, states: list[EntityState]) -> None:
    if states:
        await conn.execute(_update_totals(entity_type), _totals_params(states))


async def recompute(conn: psycopg.AsyncConnection, states: list[EntityState], reset: datetime | None,
                    *, find_as_of: bool = False) -> list[EntityState]:
    """Sum each entity's logs again from where its window now starts (after an anchor, duration
    or reset change): exact, and the same whatever order the events were read in."""
    if not states:
        return []
    entity_type = states[0].entity_type
    table = ENTITY_TABLES[entity_type]
    log_match = sql.SQL(table.log_filter.format(id="v.id"))
    # Days dropped by retention count through their rollups (an entity without a window).
    dropped = await dropped_days(conn, entity_type, await horizon_at(conn), [s.entity_id for s in states])
    if find_as_of:
        cur = await conn.execute(
            sql.SQL('SELECT v.id, (SELECT max(l."startTime") FROM "LiteLLM_SpendLogs" l WHERE {match})'
                    " FROM unnest(%s::text[]) AS v(id)").format(match=log_match),
            ([s.entity_id for s in states],),
        )
        latest = dict(await cur.fetchall())
        states = [replace(s, as_of=latest.get(s.entity_id) or dropped.get(s.entity_id, (None, None))[1]) for s in states]
    planned = [recomputed(s, s.as_of, reset) for s in states]
    # Only entities that have logs (as_of known) can have spend; the sum scans from the earliest
    # start, which for a reset is the reset's time: a short range of the startTime index.
    with_logs = [(s, start) for s, start in planned if s.as_of is not None]
    sums: dict[str, Decimal] = {}
    if with_logs:
        starts = [start for _, start in with_logs]
        floor = min(starts) if all(x is not None for x in starts) else None
        cur = await conn.execute(
            sql.SQL(
                'SELECT v.id, sum(l.spend) FROM unnest(%s::text[], %s::timestamptz[]) AS v(id, start)'
                ' JOIN "LiteLLM_SpendLogs" l ON {match} AND (v.start IS NULL OR l."startTime" >= v.start)'
                " {floor} GROUP BY v.id"
            ).format(match=log_match, floor=sql.SQL('WHERE l."startTime" >= %s' if floor else "")),
            ([s.entity_id for s, _ in with_logs], starts, *([floor] if floor else [])),
        )
        sums = dict(await cur.fetchall())
    result = [replace(s, spend=sums.get(s.entity_id, Decimal(0))
                      + (dropped[s.entity_id][0] if start is None and s.entity_id in dropped else Decimal(0)))
              for s, start in planned]
    await save_totals(conn, entity_type, result)
    return result


async def apply_admin(conn: psycopg.AsyncConnection, event: EntityChanged | SpendReset,
                      columns: dict[str, dict[str, str]]) -> list[EntityState]:
    """Apply one admin event; returns the running totals it changed."""
    if isinstance(event, SpendReset):
        return await _spend_reset(conn, event)
    table = ADMIN_TABLES[event.entity_type]
    if event.deleted:
        await conn.execute(
            sql.SQL("DELETE FROM {} WHERE {} = %s").format(sql.Identifier(table.table), sql.Identifier(table.id_column)),
            (event.entity_id,),
        )
        await conn.execute(
            "INSERT INTO tally_deleted_entities (entity_type, entity_id, deleted_at) VALUES (%s, %s, %s)"
            " ON CONFLICT (entity_type, entity_id) DO UPDATE SET deleted_at = EXCLUDED.deleted_at",
            (event.entity_type, event.entity_id, event.occurred_at),
        )
        return []
    change = admin_change(event, columns[table.table])
    if event.entity_type in STATE_TABLES:
        await conn.execute(
            "DELETE FROM tally_deleted_entities WHERE entity_type = %s AND entity_id = %s", (change.entity_type, change.entity_id))
        await _write_row(conn, change, change.created_at or change.occurred_at, columns[table.table])
        return []
    return await _upsert(conn, change, columns[table.table])


async def _write_row(conn: psycopg.AsyncConnection, change: AdminChange, created: datetime, kinds: dict[str, str]) -> None:
    """Insert or overwrite the row with the change's columns."""
    table = ADMIN_TABLES[change.entity_type]
    values = {
        name: Jsonb(v) if kinds.get(name) == "jsonb" else v for name, v in sorted(change.values.items())
    }
    names = [table.id_column, *values, "created_at", "updated_at"]
    params = [change.entity_id, *values.values(), created, change.occurred_at]
    await conn.execute(
        sql.SQL("INSERT INTO {table} ({names}) VALUES ({params}) ON CONFLICT ({id}) DO UPDATE SET {sets}").format(
            table=sql.Identifier(table.table),
            names=sql.SQL(", ").join(map(sql.Identifier, names)),
            params=sql.SQL(", ").join(sql.Placeholder() * len(names)),
            id=sql.Identifier(table.id_column),
            sets=sql.SQL(", ").join(
                sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n)) for n in names[1:]
            ),
        ),
        params,
    )


async def _upsert(conn: psycopg.AsyncConnection, change: AdminChange, kinds: dict[str, str]) -> list[EntityState]:
    table = ENTITY_TABLES[change.entity_type]
    where = sql.SQL("{} = %s").format(sql.Identifier(table.id_column))
    cur = await conn.execute(_select_states(change.entity_type, where, lock=True), (change.entity_id,))
    row = await cur.fetchone()
    before = _state(change.entity_type, row) if row else None
    cur = await conn.execute(
        "DELETE FROM tally_deleted_entities WHERE entity_type = %s AND entity_id = %s RETURNING 1",
        (change.entity_type, change.entity_id),
    )
    was_deleted = (await cur.fetchone()) is not None
    # The anchor of the budget windows: what the state says, else what the row already had,
    # else this event's time (a row that spend created before its admin event has none yet).
    created = change.created_at or (before.anchor if before else None) or change.occurred_at
    await _write_row(conn, change, created, kinds)
    cur = await conn.execute(_select_states(change.entity_type, where, lock=False), (change.entity_id,))
    after = _state(change.entity_type, await cur.fetchone())
    reset = await last_reset(conn)
    if before is None and not was_deleted:
        # A new entity: no log can be counted yet (logs of unknown entities create their row).
        state, _ = recomputed(after, None, reset)
        await save_totals(conn, change.entity_type, [state])
        return [state]
    window_moved = before is not None and (
        before.duration != after.duration or (after.duration is not None and before.anchor != after.anchor)
    )
    if was_deleted or window_moved:
        return await recompute(conn, [after], reset, find_as_of=was_deleted)
    return []


async def _spend_reset(conn: psycopg.AsyncConnection, event: SpendReset) -> list[EntityState]:
    """Keys' and teams' spend is zero as of the reset's time; logs after it still count."""
    before = await last_reset(conn)
    await conn.execute(
        "INSERT INTO tally_spend_resets (event_id, occurred_at) VALUES (%s, %s) ON CONFLICT (event_id) DO NOTHING",
        (event.event_id, event.occurred_at),
    )
    reset = await last_reset(conn)
    if reset == before:
        return []  # an older or repeated reset: the latest one already governs
    changed: list[EntityState] = []
    for entity_type in sorted(RESETTABLE):
        cur = await conn.execute(_select_states(entity_type, sql.SQL("TRUE"), lock=True))
        states = [_state(entity_type, r) for r in await cur.fetchall()]
        changed.extend(await recompute(conn, states, reset))
    return changed
