"""The ledger's periodic database rounds (spend-log retention, pruning per-holder spend): each runs
now and then every interval on a pooled connection; a round the database fails (away, a lock not
had in time) is logged and tried again at the next, so no round can stop the ledger."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool

log = structlog.get_logger("ledger.housekeeping")


async def every(interval_s: float, pool: AsyncConnectionPool, round_: Callable[[psycopg.AsyncConnection], Awaitable[None]],
                *, failed: str, fields: Callable[[], dict[str, Any]] = dict) -> None:
    """Run `round_` every `interval_s`; a failure is logged as `failed`, with `fields()`."""
    while True:
        try:
            async with pool.connection() as conn:
                await round_(conn)
        except (psycopg.Error, OSError) as exc:
            log.warning(failed, error=f"{type(exc).__name__}: {exc}", **fields())
        await asyncio.sleep(interval_s)
