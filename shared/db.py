"""Postgres helpers: the connection pool and waiting for the server."""

from __future__ import annotations

import asyncio

import psycopg
from psycopg_pool import AsyncConnectionPool


def pool(database_url: str, *, min_size: int = 1, max_size: int = 8, schema: str | None = None) -> AsyncConnectionPool:
    """An unopened pool; open it in a cleanup context. `schema` pins search_path (replays use it)."""
    kwargs: dict[str, object] = {"autocommit": False}
    if schema:
        kwargs["options"] = f"-c search_path={schema}"
    return AsyncConnectionPool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        kwargs=kwargs,
        open=False,
        check=AsyncConnectionPool.check_connection,
        reconnect_timeout=3600,
    )


async def wait_for_database(database_url: str, timeout: float = 60.0) -> None:
    """Connect until the server answers, with backoff, up to `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.2
    while True:
        try:
            conn = await psycopg.AsyncConnection.connect(database_url, connect_timeout=5)
            await conn.close()
            return
        except psycopg.OperationalError as exc:
            if loop.time() + delay > deadline:
                raise TimeoutError(f"Postgres did not answer in {timeout}s: {exc}") from exc
        await asyncio.sleep(delay)  # backoff between retries
        delay = min(delay * 2, 2.0)
