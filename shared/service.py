"""Running a service: uvloop when present, aiohttp's run_app (SIGTERM finishes cleanly)."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading

from aiohttp import web

from shared.task_dump import install_task_dump

SHUTDOWN_TIMEOUT_S = 15.0  # calls in flight at SIGTERM get this long to finish


def run_service(app: web.Application, host: str, port: int, *, stop_deadline_s: float | None = None,
                shutdown_timeout: float = SHUTDOWN_TIMEOUT_S) -> None:
    """With `stop_deadline_s`, a SIGTERM that has not ended the process by then ends it at once: for
    a stage whose books never depend on a clean stop (offsets committed with the rows, or in the
    same transaction as what they produce), a stop hung on an unreachable broker must not keep a
    process that an operator or a supervisor means to replace holding its partitions."""
    if stop_deadline_s is not None:
        app.on_shutdown.append(lambda _app: _exit_after(stop_deadline_s))
    web.run_app(app, host=host, port=port, print=None, access_log=None, loop=service_loop(), shutdown_timeout=shutdown_timeout)


async def _exit_after(seconds: float) -> None:
    def hard_exit() -> None:  # on a thread: runs even when the event loop is stuck
        sys.stderr.write(f'{{"event": "service_stop_deadline_passed", "deadline_s": {seconds}, "level": "error"}}\n')
        sys.stderr.flush()
        os._exit(1)

    timer = threading.Timer(seconds, hard_exit)
    timer.daemon = True  # a clean stop within the deadline exits without waiting for it
    timer.start()


def service_loop() -> asyncio.AbstractEventLoop:
    """The event loop a service runs on (uvloop, the faster loop, when installed), with the task
    dump on SIGUSR1 and the collector tuned."""
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is installed on Linux
        loop_factory = asyncio.new_event_loop
    quiet_gc()
    loop = loop_factory()
    asyncio.set_event_loop(loop)
    install_task_dump(loop)  # kill -USR1 <pid>: where every task waits
    return loop


def quiet_gc() -> None:
    """What exists at start-up (config, price catalog, routes) lives as long as the process:
    frozen, the collector never walks it again. Young objects are collected every 10,000
    allocations instead of 700: a call allocates hundreds, nearly all freed by reference count."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
