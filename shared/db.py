"""The Postgres connection pool: the one factory every service opens its pool with."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import psycopg
from psycopg_pool import AsyncConnectionPool


def pool(database_url: str, *, min_size: int = 1, max_size: int = 8, schema: str | None = None,
         server_settings: Mapping[str, str] | None = None,
         configure: Callable[[psycopg.AsyncConnection], Awaitable[None]] | None = None,
         name: str | None = None) -> AsyncConnectionPool:
    """An unopened pool; open it in a cleanup context. `schema` pins search_path (replays use
    it); `server_settings` are set per connection (`-c name=value`), `configure` runs on each new
    connection."""
    kwargs: dict[str, object] = {"autocommit": False}
    options = [f"-c {key}={value}" for key, value in (server_settings or {}).items()]
    if schema:
        options.append(f"-c search_path={schema}")
    if options:
        kwargs["options"] = " ".join(options)
    return AsyncConnectionPool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        kwargs=kwargs,
        open=False,
        configure=configure,
        check=AsyncConnectionPool.check_connection,
        reconnect_timeout=3600,
        name=name,
    )
