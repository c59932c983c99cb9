"""Run a long-lived worker, restarting it with capped exponential backoff when it fails, so a
service whose Kafka or Postgres is down stays up (unhealthy) instead of crash-looping."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)


async def supervise(name: str, worker: Callable[[], Awaitable[None]], *, first_delay: float = 0.5, max_delay: float = 15.0,
                    fatal: tuple[type[BaseException], ...] = ()) -> None:
    delay = first_delay
    while True:
        started = asyncio.get_running_loop().time()
        try:
            await worker()
            log.info("worker_finished", worker=name)
            return
        except asyncio.CancelledError:
            raise
        except fatal:
            raise
        except Exception as exc:  # noqa: BLE001 - logged, then retried with backoff
            if asyncio.get_running_loop().time() - started > 60:
                delay = first_delay  # it ran a good while: start the backoff afresh
            log.warning("worker_failed", worker=name, error=f"{type(exc).__name__}: {exc}", retry_in_s=delay)
        await asyncio.sleep(delay)  # backoff before the next attempt
        delay = min(delay * 2, max_delay)
