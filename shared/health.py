"""/health and /metrics, the same on every service. Health is 200 only when every dependency check
passes right now (a real round trip to Kafka / Postgres), else 503 with the failing ones named."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import psycopg
from aiohttp import web
from aiokafka import AIOKafkaProducer
from psycopg_pool import AsyncConnectionPool

from shared.metrics import Registry

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
            failures[name] = f"{type(exc).__name__}: {exc}"[:300]

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
