"""Spend log retention (TALLY_SPEND_LOG_RETENTION_DAYS): whole daily partitions of
"LiteLLM_SpendLogs" older than the cut-off are dropped, the rollups and totals kept.

A day may go once it is final: its rollups and every total can no longer change. The horizon
(migration 0011) makes that so: a batch checks, under a share lock of the horizon row and in its
own transaction, that none of its logs starts before the horizon, and refuses the event otherwise
(dead letter); the drop moves the horizon under an exclusive lock of that row. The lateness
accepted is therefore the retention itself: an event that reaches the ledger more than
`days` days after its UTC start day is refused rather than counted into a finished day."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import structlog
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from services.ledger.housekeeping import every
from services.ledger.rollup import DAILY_ENTITY, DAILY_TABLES

log = structlog.get_logger("ledger.retention")

# A drop takes ACCESS EXCLUSIVE on the parent for a moment. Behind a long report it would make
# every later query queue behind it, so it gives up after this and tries at the next round.
LOCK_TIMEOUT = "1s"
INTERVAL_S = 3600.0


def cutoff_for(now: datetime, days: int) -> date:
    """The first UTC day kept: today and the `days` days before it stay."""
    return now.astimezone(timezone.utc).date() - timedelta(days=days)


async def horizon(conn: psycopg.AsyncConnection) -> date | None:
    """The first day whose spend logs are kept (None: nothing was ever dropped)."""
    cur = await conn.execute("SELECT horizon FROM tally_spend_log_retention")
    row = await cur.fetchone()
    return row[0] if row else None


async def horizon_at(conn: psycopg.AsyncConnection) -> datetime | None:
    day = await horizon(conn)
    return None if day is None else datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


async def dropped_days(conn: psycopg.AsyncConnection, entity_type: str, horizon: datetime | None,
                       ids: list[str] | None = None) -> dict[str, tuple[Decimal, datetime]]:
    """Per entity (of `ids`, or all), the spend and the latest log of the days dropped before
    `horizon`, from their daily rollups, which stand for those logs."""
    if horizon is None:
        return {}
    table = next(t for t, e in DAILY_ENTITY.items() if e == entity_type)
    column = sql.Identifier(DAILY_TABLES[table])
    cur = await conn.execute(
        sql.SQL("SELECT {col}, sum(spend), max(updated_at) FROM {table} WHERE date < %s{only} GROUP BY 1").format(
            col=column, table=sql.Identifier(table),
            only=sql.SQL("") if ids is None else sql.SQL(" AND {} = ANY(%s)").format(column)),
        (horizon.date().isoformat(), *([] if ids is None else [ids])))
    return {i: (spend, latest) for i, spend, latest in await cur.fetchall()}


async def drop_before(conn: psycopg.AsyncConnection, cutoff: date) -> list[str]:
    """Move the horizon to `cutoff` and drop the partitions before it, in one transaction;
    returns the partitions dropped."""
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        cur = await conn.execute("SELECT tally_drop_spend_logs_before(%s)", (cutoff,))
        return [name for name, in await cur.fetchall()]


async def retention_loop(pool: AsyncConnectionPool, days: int, interval_s: float = INTERVAL_S) -> None:
    """Every `interval_s`: drop the days before the cut-off (a failed round is tried at the next)."""
    def cutoff() -> date:
        return cutoff_for(datetime.now(timezone.utc), days)

    async def drop(conn: psycopg.AsyncConnection) -> None:
        horizon_day = cutoff()
        dropped = await drop_before(conn, horizon_day)
        if dropped:
            log.info("spend_logs_dropped", horizon=horizon_day.isoformat(), partitions=dropped)

    await every(interval_s, pool, drop, failed="spend_log_retention_failed", fields=lambda: {"horizon": cutoff().isoformat()})
