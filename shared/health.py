"""/health and /metrics, the same on every service. Health is 200 only when every dependency check
passes right now (a real round trip to Kafka / Postgres), else 503 with the failing ones named."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import psycopg
from aiohttp import web
from aiokafka import AIOKafkaProducer
from psycopg_pool import AsyncConnectionPool

from shared.kafka import wait_for_broker
from shared.metrics import Registry
from shared.settings import CommonSettings

HealthCheck = Callable[[], Awaitable[None]]  # raises when the dependency is down

HEALTH_CHECKS: web.AppKey[dict[str, HealthCheck]] = web.AppKey("health_checks", dict)
METRICS: web.AppKey[Registry] = web.AppKey("metrics", Registry)


def postgres_check(pool: AsyncConnectionPool) -> HealthCheck:
    async def check() -> None:
        async with pool.connection(timeout=2) as conn:
            await conn.execute("SELECT 1")

    return check


def kafka_check(producer: AIOKafkaProducer) -> HealthCheck:
    async def check() -> None:
        # Asks the broker for fresh cluster metadata: fails when no broker answers.
        client = producer.client
        ok = await client.force_metadata_update()
        if not ok or not client.cluster.brokers():
            raise ConnectionError("no Kafka broker answers")

    return check


async def health(request: web.Request) -> web.Response:
    checks = request.app[HEALTH_CHECKS]
    failures: dict[str, str] = {}

    async def run(name: str, check: HealthCheck) -> None:
        try:
            await asyncio.wait_for(check(), timeout=3)
        except (OSError, psycopg.Error, ConnectionError, asyncio.TimeoutError, Exception) as exc:  # noqa: BLE001 - report, not swallow
            failures[name] = f"{type(exc).__name__}: {exc}"[:1000]

    await asyncio.gather(*(run(n, c) for n, c in checks.items()))
    body = {"status": "healthy" if not failures else "unhealthy", "checks": {n: failures.get(n, "ok") for n in checks}}
    return web.json_response(body, status=200 if not failures else 503)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(text=request.app[METRICS].render(), content_type="text/plain", charset="utf-8")


def add_health_routes(app: web.Application, registry: Registry) -> None:
    app[HEALTH_CHECKS] = {}
    app[METRICS] = registry
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)


# A partition: (topic, partition). Plain tuples keep this free of Kafka and Postgres types.
Partition = tuple[str, int]


class StageStalled(Exception):
    """Input is waiting on a partition and the stage's committed offset has not moved."""


class StageProgress:
    """Where a stage's committed offsets stand against the end of its input, as measured by a
    monitor task apart from the worker, so the lag and the stall are true while the worker is
    down or restarting. Pure: the monitor feeds it measurements and the clock."""

    def __init__(self, stage: str, stall_after_s: float) -> None:
        self.stage = stage
        self.stall_after_s = stall_after_s
        self.committed: dict[Partition, int] = {}
        self.ends: dict[Partition, int] = {}
        self.since: dict[Partition, float] = {}  # when each partition last advanced or had nothing waiting
        self.lag = 0
        self.last_progress_at = 0.0  # wall-clock time of the last advance on any partition
        self.last_error: str | None = None
        self.last_error_at = 0.0

    def observe(self, committed: dict[Partition, int], ends: dict[Partition, int], now: float, wall: float) -> int:
        """Record one measurement; returns the lag (messages between committed offsets and ends)."""
        lag = 0
        for partition, end in ends.items():
            offset = committed.get(partition, 0)
            waiting = max(0, end - offset)
            lag += waiting
            moved = self.committed.get(partition) != offset  # the first measurement counts as a move
            # Input that arrived since the last measurement has waited at most since now.
            was_idle = self.ends.get(partition, 0) <= self.committed.get(partition, 0)
            if moved:
                self.last_progress_at = wall
            if moved or waiting == 0 or was_idle:
                self.since[partition] = now
            self.committed[partition] = offset
            self.ends[partition] = end
        self.lag = lag
        return lag

    def note_error(self, error: str, wall: float) -> None:
        self.last_error = error[:300]
        self.last_error_at = wall

    def stuck(self, now: float, wall: float) -> list[str]:
        """One sentence per partition with input waiting that has not advanced for stall_after_s."""
        found = []
        for partition, end in sorted(self.ends.items()):
            offset = self.committed.get(partition, 0)
            stalled_for = now - self.since.get(partition, now)
            if end > offset and stalled_for >= self.stall_after_s:
                found.append(f"{self.stage}: {partition[0]}[{partition[1]}] at offset {offset} has not advanced for"
                             f" {stalled_for:.0f} s ({end - offset} waiting)")
        if found and self.last_error is not None:
            found[-1] += f"; last error ({wall - self.last_error_at:.0f} s ago): {self.last_error}"
        return found


def progress_check(progress: StageProgress) -> HealthCheck:
    async def check() -> None:
        loop = asyncio.get_running_loop()
        stuck = progress.stuck(loop.time(), time.time())
        if stuck:
            raise StageStalled("; ".join(stuck))

    return check


def add_stage_checks(app: web.Application, settings: CommonSettings, stage: str, ready: asyncio.Event,
                     progress: StageProgress) -> None:
    """A stage's checks: the broker answers; the worker runs (else its last error); no input
    partition has stalled (see StageProgress). Each names its own cause, so a poison record is
    never reported as Kafka being down."""
    async def kafka_up() -> None:
        await wait_for_broker(settings, timeout=2)

    async def worker_running() -> None:
        if not ready.is_set():
            cause = f"restarting after: {progress.last_error}" if progress.last_error else "starting"
            raise ConnectionError(f"the {stage} worker is not running: {cause}")

    checks = app[HEALTH_CHECKS]
    checks["kafka"] = kafka_up
    checks["worker"] = worker_running
    checks["progress"] = progress_check(progress)
