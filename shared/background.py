"""A task that lives as long as a block: started on entry, cancelled and awaited on exit.

What every service's cleanup contexts do with their consumers, followers and timers:

    async def ledger_worker(app):
        async with background_task(supervise("ledger", ledger.run), name="ledger"):
            yield
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any


@contextlib.asynccontextmanager
async def background_task(coro: Coroutine[Any, Any, Any], *, name: str) -> AsyncIterator[asyncio.Task[Any]]:
    task = asyncio.create_task(coro, name=name)
    try:
        yield task
    finally:
        task.cancel()
        # Its own failure was the task's to log; what matters here is that it is over.
        await asyncio.gather(task, return_exceptions=True)
