"""Run a long-lived worker, restarting it with capped exponential backoff when it fails, so a
service whose Kafka or Postgres is down stays up (unhealthy) instead of crash-looping."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from shared.backoff import Backoff

log = structlog.get_logger(__name__)


async def supervise(name: str, worker: Callable[[], Awaitable[None]], *, first_delay: float = 0.5, max_delay: float = 15.0,
                    fatal: tuple[type[BaseException], ...] = ()) -> None:
    backoff = Backoff(first_delay, max_delay)
    while True:
        started = asyncio.get_running_loop().time()
        try:
            await worker()
            log.info("worker_finished", worker=name)
            return
        except asyncio.CancelledError:
            if cancelled_from_outside():
                raise
            # A CancelledError that nobody asked for, leaked by a library (aiokafka's
            # consumer.stop() raises the one of a fetch it cancels): were it let through, the
            # supervisor would end without a word and the worker never run again.
            error = "CancelledError raised inside the worker"
        except fatal:
            raise
        except Exception as exc:  # noqa: BLE001 - logged, then retried with backoff
            if cancelled_from_outside():
                # Asked to stop (SIGTERM), but what the worker awaited turned the cancellation
                # into another error (Python 3.11's wait_for can, when its timeout fires at the
                # same moment): restarting would outlive the shutdown for good.
                raise asyncio.CancelledError from exc
            error = f"{type(exc).__name__}: {exc}"
        if asyncio.get_running_loop().time() - started > 60:
            backoff.reset()  # it ran a good while: start the backoff afresh
        log.warning("worker_failed", worker=name, error=error, retry_in_s=backoff.delay)
        await backoff.sleep()


def cancelled_from_outside() -> bool:
    """Whether the running task has been asked to cancel (Task.cancel), as opposed to a
    CancelledError raised from inside what it awaits."""
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0
