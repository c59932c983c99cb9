"""The Postgres adapter: one transaction per batch holds the spend logs, the rollups, the totals,
the admin changes and the consumed offsets, so a crash anywhere re-reads the batch and the
`ON CONFLICT (request_id, "startTime") DO NOTHING` insert makes the re-read count nothing twice.

When several ledgers split the partitions (consumer group), each batch is also fenced: it locks
its partitions' rows in tally_partition_owners and checks their epochs are the ones its ledger
claimed, in the same transaction, so a ledger that lost a partition can never write it again.

Per log, Python only hands COPY a row built when the event was read; the rollups and the
entities' new spend are summed in Postgres over the rows really inserted (batch_sql.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import set_json_dumps
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from services.ledger import batch_sql, entity_store, holder_spend
from services.ledger.batching import Batch
from services.ledger.entity_tables import ADMIN_TABLES, ENTITY_TABLES
from services.ledger.errors import PartitionsFenced, SchemaSwapped, Unstorable
from services.ledger.rollup import EntityState, NewLogs, advanced, counts_all, next_window
from services.ledger.rows import SpendLogLine, json_text
from shared import db

# Rows per write into COPY (about 1 MB).
COPY_CHUNK_ROWS = 1000
# Per ledger connection, used only as a batch needs them.
TEMP_BUFFERS = "64MB"
WORK_MEM = "64MB"

# Held shared by every ledger batch and exclusively by a replay while it swaps schemas.
SWAP_LOCK = 7_305_012
# A ledger stopped mid-transaction (SIGSTOP, a long GC) holds its partitions' owner rows: the
# ledger that takes them over waits at most this long before Postgres ends that session.
IDLE_IN_TRANSACTION_TIMEOUT = "30s"

# Claim partitions: bump each one's epoch (sorted, so two claims queue rather than deadlock).
_CLAIM = (
    "INSERT INTO tally_partition_owners AS o (consumer_group, topic, partition, epoch, owner, claimed_at)"
    " SELECT %s, v.topic, v.partition, 1, %s, now() FROM unnest(%s::text[], %s::int[]) AS v(topic, partition)"
    " ORDER BY 2, 3"
    " ON CONFLICT (consumer_group, topic, partition) DO UPDATE"
    " SET epoch = o.epoch + 1, owner = EXCLUDED.owner, claimed_at = EXCLUDED.claimed_at"
    " RETURNING topic, partition, epoch"
)
# A batch's fence: lock its partitions' owner rows (shared: a claim waits for the batch) and keep
# those whose epoch is still ours. A claim committed meanwhile is seen: under READ COMMITTED a
# row lock that waited re-reads the row.
_FENCE = (
    "SELECT o.topic, o.partition FROM tally_partition_owners o"
    " JOIN unnest(%s::text[], %s::int[], %s::bigint[]) AS v(topic, partition, epoch)"
    " ON o.topic = v.topic AND o.partition = v.partition AND o.epoch = v.epoch"
    " WHERE o.consumer_group = %s ORDER BY 1, 2 FOR SHARE OF o"
)


async def _configure(conn: psycopg.AsyncConnection) -> None:
    # No server-side prepared statements: they would keep pointing at the old tables after a
    # replay swaps schemas under a running ledger.
    conn.prepare_threshold = None
    set_json_dumps(json_text, context=conn)


def make_pool(database_url: str, schema: str, size: int) -> AsyncConnectionPool:
    # No JIT: a batch's statements are planned fresh each time (no prepared statements, see
    # _configure), and from about 10,000 rows their estimated cost passes jit_above_cost, so
    # LLVM compiled them every batch: 1.5 s of a replay's 2.3 s insert of 20,000 logs.
    # A batch's temp tables and sorts stay in memory (the defaults are 8 MB of temp buffers and
    # 4 MB of work_mem); temp_buffers is only settable before a session's first temp table.
    return db.pool(
        database_url, min_size=1, max_size=size, schema=None if schema == "public" else schema,
        server_settings={"jit": "off", "temp_buffers": TEMP_BUFFERS, "work_mem": WORK_MEM,
                         "idle_in_transaction_session_timeout": IDLE_IN_TRANSACTION_TIMEOUT},
        configure=_configure, name=f"ledger-{schema}",
    )


@dataclass
class BatchResult:
    inserted: list[SpendLogLine]  # the rows this batch inserted
    duplicates: int
    totals: list[EntityState]  # every running total this batch changed, after the commit


def is_data_error(exc: BaseException) -> bool:
    """Integrity (23), data (22) and program-limit (54, e.g. an index row too large) errors are
    the data's fault; retrying them would block the ledger forever."""
    if isinstance(exc, Unstorable):
        return True
    state = getattr(exc, "sqlstate", None) or ""
    return isinstance(exc, psycopg.Error) and state[:2] in {"22", "23", "54"}


def is_transient(exc: BaseException) -> bool:
    """The database is down, restarting, or chose this transaction as a deadlock victim."""
    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)) and not is_data_error(exc)


_SCHEMA_OID = "SELECT oid::bigint FROM pg_namespace WHERE nspname = current_schema()"


class LedgerStore:
    def __init__(self, pool: AsyncConnectionPool, consumer_name: str, *, store_bodies: bool, take_swap_lock: bool = True) -> None:
        self.pool = pool
        self.consumer_name = consumer_name
        self.store_bodies = store_bodies
        self.take_swap_lock = take_swap_lock
        self._columns: dict[str, dict[str, str]] | None = None
        self._schema_oid: int | None = None
        # The epoch of each partition this ledger claimed (claim()); None: unfenced, the ledger
        # reads every partition alone (a replay, or a manual assignment).
        self.epochs: dict[tuple[str, int], int] | None = None

    async def _same_schema(self, cur: psycopg.AsyncCursor[Any]) -> None:
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

    async def claim(self, partitions: Sequence[tuple[str, int]], owner: str) -> dict[tuple[str, int], int]:
        """Take `partitions` for this ledger: bump their epochs (any batch of their previous owner
        not yet committed is refused from now on, and one in flight is waited for) and return
        their stored offsets, read after that wait."""
        wanted = sorted(partitions)
        async with self.pool.connection() as conn:
            async with conn.transaction():
                cur = await conn.execute(_CLAIM, (self.consumer_name, owner, [t for t, _ in wanted], [p for _, p in wanted]))
                epochs = {(t, p): e for t, p, e in await cur.fetchall()}
                cur = await conn.execute(
                    "SELECT topic, partition, next_offset FROM tally_consumer_offsets WHERE consumer_group = %s",
                    (self.consumer_name,),
                )
                offsets = {(t, p): o for t, p, o in await cur.fetchall()}
        self.epochs = epochs
        return offsets

    async def entity_columns(self, conn: psycopg.AsyncConnection) -> dict[str, dict[str, str]]:
        if self._columns is None:
            cur = await conn.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = ANY(%s)",
                ([t.table for t in ADMIN_TABLES.values()],),
            )
            columns: dict[str, dict[str, str]] = {}
            for table, column, kind in await cur.fetchall():
                columns.setdefault(table, {})[column] = kind
            self._columns = columns
        return self._columns

    async def apply(self, batch: Batch) -> BatchResult:
        """Everything in one transaction; raises psycopg errors for the caller to classify.

        Statements go in pipelines (sent together, one wait for all their results): on a
        loaded machine every round trip costs a wake-up of both processes, and a batch had
        about thirty of them. Now: the start, the COPY, the inserts, rollups and entity locks,
        then the new totals with the offsets (plus one query when a window began mid-batch)."""
        async with self.pool.connection() as conn:
            async with conn.transaction():
                async with conn.pipeline():
                    if self.take_swap_lock:
                        await conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (SWAP_LOCK,))
                        schema = await conn.execute(_SCHEMA_OID)
                    fence = await self._queue_fence(conn, batch.next_offsets) if self.epochs is not None else None
                    if batch.priced:
                        for create in batch_sql.CREATE_TEMP_TABLES:
                            await conn.execute(create)
                if self.take_swap_lock:
                    await self._same_schema(schema)
                if fence is not None:
                    await self._check_fence(fence, batch.next_offsets)
                changed: dict[tuple[str, str], EntityState] = {}
                if batch.admin:
                    columns = await self.entity_columns(conn)
                    for event in batch.admin:
                        for state in await entity_store.apply_admin(conn, event, columns):
                            changed[(state.entity_type, state.entity_id)] = state
                inserted: list[SpendLogLine] = []
                new_totals: list[EntityState] = []
                if batch.priced:
                    rows = await self._copy_logs(conn, batch.priced)
                    async with conn.pipeline():
                        await conn.execute(batch_sql.REFUSE_BEFORE_HORIZON)
                        await conn.execute(batch_sql.ENSURE_PARTITIONS)
                        skipped_cur = await conn.execute(batch_sql.INSERT_LOGS)
                        await conn.execute(batch_sql.ROLLUP_UPSERTS)
                        totals = await self._lock_totals(conn)
                    skipped = {seq for seq, in await skipped_cur.fetchall()}
                    inserted = [row for seq, row in enumerate(rows) if seq not in skipped] if skipped else rows
                    new_totals = await self._advance_totals(conn, *totals)
                async with conn.pipeline():
                    await entity_store.queue_save_all_totals(conn, new_totals)
                    await holder_spend.queue_count(conn, inserted, new_totals)
                    await self._store_offsets(conn, batch.next_offsets)
                for state in new_totals:
                    changed[(state.entity_type, state.entity_id)] = state
        return BatchResult(inserted, len(batch.priced) - len(inserted), list(changed.values()))

    async def _queue_fence(self, conn: psycopg.AsyncConnection, offsets: dict[tuple[str, int], int]) -> Any:
        assert self.epochs is not None
        mine = sorted(tp for tp in offsets if tp in self.epochs)
        return await conn.execute(_FENCE, ([t for t, _ in mine], [p for _, p in mine], [self.epochs[tp] for tp in mine],
                                           self.consumer_name))

    async def _check_fence(self, fence: Any, offsets: dict[tuple[str, int], int]) -> None:
        held = {(t, p) for t, p in await fence.fetchall()}
        lost = sorted(set(offsets) - held)
        if lost:
            raise PartitionsFenced(f"partitions claimed by another ledger since: {[f'{t}[{p}]' for t, p in lost]}")

    async def _copy_logs(self, conn: psycopg.AsyncConnection, priced: Sequence[SpendLogLine]) -> list[SpendLogLine]:
        """COPY the batch's rows into tally_incoming (the first read of a request id wins, as in
        a replay); returns them in `seq` order. The rows are already in COPY's text format: the
        batch goes as a few large writes, not a formatting call per cell."""
        unique: dict[str, SpendLogLine] = {}
        for line in priced:
            unique.setdefault(line.request_id, line)
        rows = list(unique.values())
        async with conn.cursor() as cur:
            async with cur.copy(batch_sql.COPY_INCOMING) as copy:
                for start in range(0, len(rows), COPY_CHUNK_ROWS):
                    chunk = rows[start:start + COPY_CHUNK_ROWS]
                    await copy.write("".join(f"{line.text}\t{seq}\n" for seq, line in enumerate(chunk, start)).encode())
        return rows

    async def _lock_totals(self, conn: psycopg.AsyncConnection) -> tuple[Any, Any, Any]:
        """Queue (pipeline) the reads the totals need: the last reset, each entity's new logs
        summed, and its row created if missing and locked (types sorted, ids in order)."""
        reset = await conn.execute(entity_store.LAST_RESET)
        sums = await conn.execute(batch_sql.ENTITY_SUMS)
        locked = await entity_store.queue_lock_for_spend(conn, batch_sql.NEW_ENTITY_IDS)
        return reset, sums, locked

    async def _advance_totals(self, conn: psycopg.AsyncConnection, reset_cur: Any, sums_cur: Any,
                              locked: Any) -> list[EntityState]:
        """The new running totals of the locked entities, from their new logs' sums."""
        last_reset = (await reset_cur.fetchone())[0]
        new: dict[tuple[str, str], NewLogs] = {
            (t, i): NewLogs(first, last, spend) for t, i, first, last, spend in await sums_cur.fetchall()
        }
        plans = []
        for s in await entity_store.states_of(locked):
            logs = new[(s.entity_type, s.entity_id)]
            plans.append((s, logs, *next_window(s, logs.last, last_reset)))
        partial = [(s, start) for s, logs, _, start in plans if not counts_all(logs, start)]
        counted: dict[tuple[str, str], Decimal] = {}
        if partial:  # a window began inside this batch: count only the logs from its start
            cur = await conn.execute(batch_sql.ENTITY_SUMS_FROM, (
                [s.entity_type for s, _ in partial], [s.entity_id for s, _ in partial], [t for _, t in partial]))
            counted = {(t, i): v for t, i, v in await cur.fetchall()}
        return [
            advanced(s, as_of, start, logs.spend if counts_all(logs, start)
                     else counted.get((s.entity_type, s.entity_id), Decimal(0)))
            for s, logs, as_of, start in plans
        ]

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

