"""`kill -USR1 <pid>` prints every asyncio task of a running service with the whole chain of
awaits it is suspended in, down to the future it waits for. A service that stops making progress
without an error shows this way where it waits (py-spy only sees an idle event loop)."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Iterator
from types import FrameType
from typing import Any, TextIO


def await_chain(awaitable: Any) -> Iterator[FrameType | Any]:
    """The frames of a coroutine and of everything it awaits in turn; last, what the innermost
    one waits on when that is not a coroutine (a Future, say)."""
    seen = 0
    while awaitable is not None and seen < 100:
        seen += 1
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "ag_frame", None) or getattr(awaitable, "gi_frame", None)
        if frame is None:
            yield awaitable  # a Future or another object: the end of the chain
            return
        yield frame
        awaitable = (getattr(awaitable, "cr_await", None) or getattr(awaitable, "ag_await", None)
                     or getattr(awaitable, "gi_yieldfrom", None))


def describe_tasks(tasks: set[asyncio.Task[Any]]) -> str:
    lines = [f"{len(tasks)} asyncio tasks"]
    for task in sorted(tasks, key=lambda t: t.get_name()):
        lines.append(f"task {task.get_name()}")
        for step in await_chain(task.get_coro()):
            if isinstance(step, FrameType):
                lines.append(f"    {step.f_code.co_filename}:{step.f_lineno} in {step.f_code.co_name}")
            else:
                lines.append(f"    waiting on {step!r}"[:400])
    return "\n".join(lines)


def install_task_dump(loop: asyncio.AbstractEventLoop, out: TextIO = sys.stderr) -> None:
    def dump() -> None:
        print(describe_tasks(asyncio.all_tasks(loop)), file=out, flush=True)

    loop.add_signal_handler(signal.SIGUSR1, dump)
