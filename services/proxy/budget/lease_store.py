"""Where budget leases are kept: Postgres (one transaction per renewal), or memory for unit tests.

Both run the same arithmetic (leases.grant) over all the rows of one entity's window, under a lock
that makes renewals of one window take turns (in Postgres: a transaction-scoped advisory lock, so a
window with no rows yet is serialised too). Time is the store's: Postgres's now() decides expiry,
so the workers' clocks play no part. A dead row (expired) of a kind the ledger counts is given the
ledger's count of its holder's spend in the window (`tally_holder_spend`, migration 0012, in the
ledger's schema on the database's search path; where it is missing, a dead row keeps its full
charge)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Protocol

import psycopg
from psycopg_pool import AsyncConnectionPool

from services.proxy.budget.leases import ZERO, LeaseAsk, LeaseGrant, LeaseRow, grant, needing_counts, with_counts
from services.proxy.errors import ServiceUnavailable
from shared.events import utcnow
from shared.migrations import _LOCK_ID as MIGRATIONS_LOCK
from shared.migrations import discover

LEASES_MIGRATION = "budget_leases"  # services/ledger/migrations/0007_budget_leases.sql: idempotent

NO_WINDOW = datetime(1, 1, 1, tzinfo=timezone.utc)  # the one window of a budget without a duration


class LeasesUnavailable(ServiceUnavailable):
    """The lease authority could not be reached: no budget can be granted now."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"Budget authority unavailable, try again shortly: {detail}")


@dataclass(frozen=True, slots=True)
class WindowKey:
    entity_type: str
    entity_id: str
    start: datetime | None
    end: datetime | None


class LeaseStore(Protocol):
    async def renew(self, window: WindowKey, ask: LeaseAsk, ttl_s: float) -> LeaseGrant:
        """Run `ask` against the window's rows atomically; raise LeasesUnavailable when it cannot."""
        ...

    async def prune(self) -> int:
        """Delete the rows of windows that ended over an hour ago; returns how many."""
        ...


class MemoryLeaseStore:
    """The in-memory twin, for unit tests and the in-process benchmark."""

    def __init__(self, clock=utcnow) -> None:  # type: ignore[no-untyped-def]
        self.clock = clock
        self.windows: dict[WindowKey, list[LeaseRow]] = {}
        self.holder_spend: dict[tuple[WindowKey, str], Decimal] = {}  # what the ledger counted, per holder
        self._lock = asyncio.Lock()

    async def renew(self, window: WindowKey, ask: LeaseAsk, ttl_s: float) -> LeaseGrant:
        async with self._lock:
            now = self.clock()
            rows = self.windows.get(window, [])
            dead = needing_counts(rows, ask, now)
            if dead:
                rows = with_counts(rows, dead, {holder: self.holder_spend.get((window, holder), ZERO) for holder in dead})
            result, rows = grant(rows, ask, now)
            self.windows[window] = [replace(row, expires_at=now + timedelta(seconds=ttl_s)) if row.holder == ask.holder else row
                                    for row in rows]
            return result

    async def prune(self) -> int:
        now = self.clock()
        ended = [w for w in self.windows if w.end is not None and w.end < now - timedelta(hours=1)]
        for window in ended:
            del self.windows[window]
        return len(ended)


_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 7305012))"
_ROWS = ("SELECT holder, granted, used, inflight, expires_at, now() FROM tally_leases.budget_leases"
         " WHERE entity_type = %s AND entity_id = %s AND window_start = %s")
_NOW = "SELECT now()"
_HOLDER_SPEND = ("SELECT holder, spend FROM tally_holder_spend"
                 " WHERE entity_type = %s AND entity_id = %s AND window_start = %s AND holder = ANY(%s)")
_DELETE_OTHERS = ("DELETE FROM tally_leases.budget_leases WHERE entity_type = %s AND entity_id = %s AND window_start = %s"
                  " AND NOT (holder = ANY(%s))")
_UPSERT = (
    "INSERT INTO tally_leases.budget_leases AS l (entity_type, entity_id, window_start, holder, granted, used, inflight, expires_at, window_end)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, now() + make_interval(secs => %s), %s)"
    " ON CONFLICT (entity_type, entity_id, window_start, holder) DO UPDATE SET granted = EXCLUDED.granted,"
    " used = EXCLUDED.used, inflight = EXCLUDED.inflight, expires_at = EXCLUDED.expires_at, updated_at = now()")
_PRUNE = "DELETE FROM tally_leases.budget_leases WHERE window_end < now() - interval '1 hour'"


class PostgresLeaseStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def ensure_table(self) -> None:
        """Apply the leases' migration (idempotent) under the migrations' advisory lock: a proxy
        whose database the ledger has not migrated yet grants at once. Only on first need, so a
        proxy whose keys have no budget or rate limit never touches the database."""
        migration = next(m for m in discover() if m.name == LEASES_MIGRATION)
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATIONS_LOCK,))
            await conn.execute(migration.sql)

    async def renew(self, window: WindowKey, ask: LeaseAsk, ttl_s: float) -> LeaseGrant:
        try:
            try:
                return await self._renew(window, ask, ttl_s)
            except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
                await self.ensure_table()  # the first renewal on a database the ledger has not migrated yet
                return await self._renew(window, ask, ttl_s)
        except (psycopg.Error, OSError) as exc:
            raise LeasesUnavailable(f"{type(exc).__name__}: {str(exc)[:200]}") from exc
        except TimeoutError as exc:  # the pool had no connection within its timeout
            raise LeasesUnavailable("no database connection") from exc

    async def _renew(self, window: WindowKey, ask: LeaseAsk, ttl_s: float) -> LeaseGrant:
        start = window.start if window.start is not None else NO_WINDOW
        where = (window.entity_type, window.entity_id, start)
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(_LOCK, (f"{window.entity_type}/{window.entity_id}/{start.isoformat()}",))
            cursor = await conn.execute(_ROWS, where)
            fetched = await cursor.fetchall()
            if fetched:
                now = fetched[0][5]
            else:
                now = (await (await conn.execute(_NOW)).fetchone())[0]  # type: ignore[index]
            rows = [LeaseRow(holder, granted, used, inflight, expires_at)
                    for holder, granted, used, inflight, expires_at, _ in fetched]
            dead = needing_counts(rows, ask, now)
            if dead:
                counted = await _holder_spend(conn, where, dead)
                if counted is not None:
                    rows = with_counts(rows, dead, counted)
            result, after = grant(rows, ask, now)
            await conn.execute(_DELETE_OTHERS, (*where, [row.holder for row in after]))
            for row in after:
                if row.holder == ask.holder or row not in rows:  # the holder's own row, or the settled one changed
                    ttl = ttl_s if row.holder == ask.holder else None
                    await conn.execute(_UPSERT, (*where, row.holder, row.granted, row.used, row.inflight, ttl, window.end))
            return result

    async def prune(self) -> int:
        try:
            async with self.pool.connection() as conn:
                cursor = await conn.execute(_PRUNE)
                return cursor.rowcount
        except (psycopg.Error, OSError) as exc:
            raise LeasesUnavailable(f"{type(exc).__name__}: {str(exc)[:200]}") from exc


async def _holder_spend(conn: psycopg.AsyncConnection, where: tuple, holders: list[str]) -> dict[str, Decimal] | None:
    """The ledger's count of each holder's spend in the window; None when the ledger has no such
    table here (not migrated to 0012 yet): the dead rows then keep their full charge."""
    try:
        async with conn.transaction():  # a savepoint: a missing table must not end the renewal's transaction
            cursor = await conn.execute(_HOLDER_SPEND, (*where, holders))
            return {holder: spend for holder, spend in await cursor.fetchall()}
    except psycopg.errors.UndefinedTable:
        return None
