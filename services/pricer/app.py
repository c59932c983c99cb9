"""The pricer's aiohttp app: /health and /metrics, and the pricing loop as a supervised task."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web
from aiokafka.errors import ProducerFenced

from services.pricer.consumer import Pricer, PricerMetrics
from services.pricer.settings import PricerSettings
from shared import kafka
from shared.errors import openai_errors
from shared.health import HEALTH_CHECKS, add_health_routes
from shared.metrics import Registry
from shared.pricing import Catalog
from shared.supervise import supervise
from shared.topics import USAGE

SETTINGS: web.AppKey[PricerSettings] = web.AppKey("settings", PricerSettings)
CATALOG: web.AppKey[Catalog] = web.AppKey("catalog", Catalog)
METRICS: web.AppKey[PricerMetrics] = web.AppKey("pricer_metrics", PricerMetrics)
READY: web.AppKey[asyncio.Event] = web.AppKey("ready", asyncio.Event)

# aiokafka keeps one produce request in flight per broker, carrying one record batch per
# partition: at 256 KB (~180 priced events) a batch of 2,000 usage events from one partition took
# a dozen round trips. Just under the broker's and topics' default max.message.bytes (1,048,588).
PRICED_BATCH_BYTES = 1_000_000


async def pricing_loop(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]

    async def run_once() -> None:
        producer = kafka.idempotent_producer(
            settings, transactional_id=settings.transactional_id, linger_ms=2, max_batch_size=PRICED_BATCH_BYTES
        )
        consumer = kafka.consumer(settings, group_id=settings.group_id, session_timeout_ms=6000, heartbeat_interval_ms=1500)
        pricer = Pricer(settings, app[CATALOG], consumer, producer, app[METRICS])
        consumer.subscribe([settings.topic(USAGE)], listener=pricer)  # it settles its transaction on a rebalance
        try:
            await producer.start()
            await consumer.start()
            app[READY].set()
            await pricer.run()
        finally:
            app[READY].clear()
            await kafka.stop_clients(consumer, producer)

    task = asyncio.create_task(supervise("pricer", run_once, fatal=(ProducerFenced,)))
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def build_app(settings: PricerSettings, catalog: Catalog) -> web.Application:
    app = web.Application(middlewares=[openai_errors])
    registry = Registry()
    app[SETTINGS] = settings
    app[CATALOG] = catalog
    app[METRICS] = PricerMetrics(registry)
    app[READY] = asyncio.Event()
    registry.gauge("pricer_catalog_entries", "Models in the price catalog", callback=lambda: float(len(catalog)))
    add_health_routes(app, registry)
    checks = app[HEALTH_CHECKS]

    async def kafka_up() -> None:
        if not app[READY].is_set():
            raise ConnectionError("not connected to Kafka yet")
        await kafka.wait_for_broker(settings, timeout=2)

    checks["kafka"] = kafka_up
    app.cleanup_ctx.append(pricing_loop)
    return app
