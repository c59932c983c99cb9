"""The Postgres adapter: one transaction per batch holds the spend logs, the rollups, the totals,
the admin changes and the consumed offsets, so a crash anywhere re-reads the batch and the
`ON CONFLICT (request_id) DO NOTHING` insert makes the re-read count nothing twice."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb, set_json_dumps
from psycopg_pool import AsyncConnectionPool

from services.ledger import entity_store
from services.ledger.entity_tables import ENTITY_TABLES
from services.ledger.rollup import (
    DAILY_TABLES, EntityState, LogFacts, advance, daily_deltas, entity_logs,
)
from services.ledger.rows import JSON_COLUMNS, SPEND_LOG_COLUMNS, spend_log_row
from shared.events import EntityChanged, PricedUsageEvent, SpendReset

# Held shared by every ledger batch and exclusively by a replay while it swaps schemas.
SWAP_LOCK = 7_305_012


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(format(value, "f"))
    return str(value)


def _dumps(value: Any) -> str:
    return orjson.dumps(value, default=_json_default).decode()


async def _configure(conn: psycopg.AsyncConnection) -> None:
    # No server-side prepared statements: they would keep pointing at the old tables after a
    # replay swaps schemas under a running ledger.
    conn.prepare_threshold = None
    set_json_dumps(_dumps, context=conn)


def make_pool(database_url: str, schema: str, size: int) -> AsyncConnectionPool:
    kwargs: dict[str, Any] = {"autocommit": False}
    if schema != "public":
        kwargs["options"] = f"-c search_path={schema}"
    return AsyncConnectionPool(
        database_url, min_size=1, max_size=size, kwargs=kwargs, open=False, configure=_configure,
        check=AsyncConnectionPool.check_connection, reconnect_timeout=3600, name=f"ledger-{schema}",
    )


@dataclass
class Batch:
    """Decoded events in the order they were read, and where each partition's reading ends."""

    priced: list[PricedUsageEvent] = field(default_factory=list)
    admin: list[EntityChanged | SpendReset] = field(default_factory=list)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)


@dataclass
class BatchResult:
    inserted: list[LogFacts]
    duplicates: int
    totals: list[EntityState]  # every running total this batch changed, after the commit


_INSERT_LOGS = sql.SQL(
    'INSERT INTO "LiteLLM_SpendLogs" SELECT * FROM tally_incoming ORDER BY request_id '
    "ON CONFLICT (request_id) DO NOTHING RETURNING request_id"
)


class SchemaSwapped(Exception):
    """A replay swapped in a rebuilt schema: re-read from the offsets stored there."""


class LedgerStore:
    def __init__(self, pool: AsyncConnectionPool, consumer_name: str, *, store_bodies: bool, take_swap_lock: bool = True) -> None:
        self.pool = pool
        self.consumer_name = consumer_name
        self.store_bodies = store_bodies
        self.take_swap_lock = take_swap_lock
        self._columns: dict[str, dict[str, str]] | None = None
        self._schema_oid: int | None = None

    async def _same_schema(self, conn: psycopg.AsyncConnection) -> None:
        cur = await conn.execute("SELECT oid::bigint FROM pg_namespace WHERE nspname = current_schema()")
        row = await cur.fetchone()
        oid = row[0] if row else None
        if self._schema_oid is not None and oid != self._schema_oid:
            self._schema_oid = None
            self._columns = None
            raise SchemaSwapped("the ledger's schema was replaced by a replay")
        self._schema_oid = oid

    async def load_offsets(self) -> dict[tuple[str, int], int]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT topic, partition, next_offset FROM tally_consumer_offsets WHERE consumer_group = %s",
                (self.consumer_name,),
            )
            return {(t, p): o for t, p, o in await cur.fetchall()}

    async def entity_columns(self, conn: psycopg.AsyncConnection) -> dict[str, dict[str, str]]:
        if self._columns is None:
            cur = await conn.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = ANY(%s)",
                ([t.table for t in ENTITY_TABLES.values()],),
            )
            columns: dict[str, dict[str, str]] = {}
            for table, column, kind in await cur.fetchall():
                columns.setdefault(table, {})[column] = kind
            self._columns = columns
        return self._columns

    async def apply(self, batch: Batch) -> BatchResult:
        """Everything in one transaction; raises psycopg errors for the caller to classify."""
        async with self.pool.connection() as conn:
            async with conn.transaction():
                if self.take_swap_lock:
                    await conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (SWAP_LOCK,))
                    await self._same_schema(conn)
                changed: dict[tuple[str, str], EntityState] = {}
                columns = await self.entity_columns(conn)
                for event in batch.admin:
                    for state in await entity_store.apply_admin(conn, event, columns):
                        changed[(state.entity_type, state.entity_id)] = state
                inserted, duplicates = await self._insert_logs(conn, batch.priced)
                if inserted:
                    await self._roll_up(conn, inserted)
                    for state in await self._advance_totals(conn, inserted):
                        changed[(state.entity_type, state.entity_id)] = state
                await self._store_offsets(conn, batch.next_offsets)
        return BatchResult(inserted, duplicates, list(changed.values()))

    async def _insert_logs(self, conn: psycopg.AsyncConnection, events: Sequence[PricedUsageEvent]) -> tuple[list[LogFacts], int]:
        if not events:
            return [], 0
        unique: dict[str, PricedUsageEvent] = {}
        for event in events:
            unique.setdefault(event.request_id, event)  # the first read wins, as in a replay
        await conn.execute(
            'CREATE TEMP TABLE IF NOT EXISTS tally_incoming (LIKE "LiteLLM_SpendLogs") ON COMMIT DELETE ROWS'
        )
        json_at = [i for i, name in enumerate(SPEND_LOG_COLUMNS) if name in JSON_COLUMNS]
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in SPEND_LOG_COLUMNS)
        async with conn.cursor() as cur:
            async with cur.copy(sql.SQL("COPY tally_incoming ({}) FROM STDIN").format(columns)) as copy:
                for event in unique.values():
                    row = list(spend_log_row(event, self.store_bodies))
                    for i in json_at:
                        if row[i] is not None:
                            row[i] = Jsonb(row[i])
                    await copy.write_row(row)
            await cur.execute(_INSERT_LOGS)
            inserted_ids = {r[0] for r in await cur.fetchall()}
        inserted = [LogFacts.of(e) for rid, e in unique.items() if rid in inserted_ids]
        return inserted, len(events) - len(inserted)

    async def _roll_up(self, conn: psycopg.AsyncConnection, logs: list[LogFacts]) -> None:
        by_table: dict[str, list[tuple[Any, ...]]] = {}
        for (table, entity, day, api_key, model, provider, endpoint), d in daily_deltas(logs).items():
            by_table.setdefault(table, []).append((
                entity, day, api_key, model, d.model_group, provider, endpoint, d.prompt_tokens,
                d.completion_tokens, d.cache_read_input_tokens, d.cache_creation_input_tokens, d.spend,
                d.api_requests, d.successful_requests, d.failed_requests, d.first_seen, d.last_seen,
            ))
        for table in sorted(by_table):
            rows = by_table[table]
            columns = list(zip(*rows))
            query = sql.SQL(
                "INSERT INTO {table} ({entity}, date, api_key, model, model_group, custom_llm_provider, endpoint,"
                " prompt_tokens, completion_tokens, cache_read_input_tokens, cache_creation_input_tokens, spend,"
                " api_requests, successful_requests, failed_requests, created_at, updated_at)"
                " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],"
                " %s::text[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::numeric[], %s::bigint[],"
                " %s::bigint[], %s::bigint[], %s::timestamptz[], %s::timestamptz[])"
                " AS v ORDER BY 1, 2, 3, 4, 6, 7"
                " ON CONFLICT ({entity}, date, api_key, model, custom_llm_provider, endpoint) DO UPDATE SET"
                " prompt_tokens = t.prompt_tokens + EXCLUDED.prompt_tokens,"
                " completion_tokens = t.completion_tokens + EXCLUDED.completion_tokens,"
                " cache_read_input_tokens = t.cache_read_input_tokens + EXCLUDED.cache_read_input_tokens,"
                " cache_creation_input_tokens = t.cache_creation_input_tokens + EXCLUDED.cache_creation_input_tokens,"
                " spend = t.spend + EXCLUDED.spend, api_requests = t.api_requests + EXCLUDED.api_requests,"
                " successful_requests = t.successful_requests + EXCLUDED.successful_requests,"
                " failed_requests = t.failed_requests + EXCLUDED.failed_requests,"
                " created_at = LEAST(t.created_at, EXCLUDED.created_at),"
                " updated_at = GREATEST(t.updated_at, EXCLUDED.updated_at)"
            ).format(table=sql.SQL("{} AS t").format(sql.Identifier(table)), entity=sql.Identifier(DAILY_TABLES[table]))
            await conn.execute(query, [list(c) for c in columns])

    async def _advance_totals(self, conn: psycopg.AsyncConnection, logs: list[LogFacts]) -> list[EntityState]:
        grouped = entity_logs(logs)
        last_reset = await entity_store.last_reset(conn)
        changed: list[EntityState] = []
        for entity_type in sorted({t for t, _ in grouped}):
            ids = sorted(i for t, i in grouped if t == entity_type)
            states = await entity_store.lock_for_spend(conn, entity_type, ids)
            new_states = [advance(s, grouped[(entity_type, s.entity_id)], last_reset) for s in states]
            await entity_store.save_totals(conn, entity_type, new_states)
            changed.extend(new_states)
        return changed

    async def _store_offsets(self, conn: psycopg.AsyncConnection, offsets: dict[tuple[str, int], int]) -> None:
        if not offsets:
            return
        items = sorted(offsets.items())
        await conn.execute(
            "INSERT INTO tally_consumer_offsets (consumer_group, topic, partition, next_offset)"
            " SELECT %s, * FROM unnest(%s::text[], %s::int[], %s::bigint[]) ORDER BY 1, 2, 3"
            " ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset",
            (self.consumer_name, [t for (t, _), _ in items], [p for (_, p), _ in items], [o for _, o in items]),
        )

    async def all_totals(self) -> list[EntityState]:
        """Every entity's running total (published to the totals topic on start)."""
        async with self.pool.connection() as conn:
            states: list[EntityState] = []
            for entity_type in ENTITY_TABLES:
                states.extend(await entity_store.read_states(conn, entity_type))
            await conn.rollback()
            return states

