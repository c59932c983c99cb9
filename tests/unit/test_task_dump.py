"""The task dump names every task and the whole chain of awaits it is suspended in."""

from __future__ import annotations

import asyncio
import io
import os
import signal

from shared.task_dump import describe_tasks, install_task_dump
from tests.fixtures.polling import eventually_async


async def _inner(gate: asyncio.Future[None]) -> None:
    await gate


async def _outer(gate: asyncio.Future[None]) -> None:
    await _inner(gate)


async def test_a_task_is_shown_with_every_coroutine_it_awaits():
    """A suspended task is listed by name with each coroutine of its await chain and what it waits on."""
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(_outer(gate), name="waiter")
    await asyncio.sleep(0)  # let it start and suspend
    text = describe_tasks({task})
    gate.set_result(None)
    await task
    lines = text.splitlines()
    assert lines[:2] == ["1 asyncio tasks", "task waiter"]
    assert [line.rsplit(" in ", 1)[1] for line in lines[2:4]] == ["_outer", "_inner"]
    assert lines[4].startswith("    waiting on ")


async def test_sigusr1_prints_the_dump():
    """SIGUSR1 writes the dump, which names the running test's own task, to the given stream."""
    out = io.StringIO()
    loop = asyncio.get_running_loop()
    install_task_dump(loop, out)
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        await eventually_async(lambda: "asyncio tasks" in out.getvalue(), 5, "the SIGUSR1 handler's dump", 0.01)
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
    assert "test_sigusr1_prints_the_dump" in out.getvalue()
