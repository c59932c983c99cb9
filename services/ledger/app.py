"""The ledger's aiohttp app: /health and /metrics, the Postgres pool, and the consumer loop as a
supervised task (restarted with backoff if Kafka goes away)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from services.ledger.consumer import Ledger, topics_for
from services.ledger.metrics import LedgerMetrics
from services.ledger.settings import LedgerSettings
from services.ledger.store import LedgerStore, make_pool
from shared import kafka
from shared.errors import openai_errors
from shared.health import HEALTH_CHECKS, add_health_routes, postgres_check
from shared.metrics import Registry
from shared.migrations import migrate
from shared.supervise import supervise

SETTINGS: web.AppKey[LedgerSettings] = web.AppKey("settings", LedgerSettings)
POOL: web.AppKey[AsyncConnectionPool] = web.AppKey("pool", AsyncConnectionPool)
METRICS: web.AppKey[LedgerMetrics] = web.AppKey("ledger_metrics", LedgerMetrics)
READY: web.AppKey[asyncio.Event] = web.AppKey("ready", asyncio.Event)


async def database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    pool = make_pool(settings.database_url, settings.db_schema, settings.pool_size)
    await pool.open(wait=False)  # the database may be down at start: the loop retries
    app[POOL] = pool
    app[HEALTH_CHECKS]["postgres"] = postgres_check(pool)
    yield
    await pool.close()


async def consumer_loop(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    topics, priced, dlq, totals = topics_for(settings.topic)

    async def run_once() -> None:
        await migrate(settings.database_url, schema=settings.db_schema)
        producer = kafka.idempotent_producer(settings)
        consumer = kafka.consumer(settings, group_id=None, max_poll_records=settings.batch_max_events)
        try:
            await producer.start()
            await consumer.start()
            app[READY].set()
            store = LedgerStore(app[POOL], settings.consumer_name, store_bodies=settings.store_bodies)
            ledger = Ledger(
                consumer=consumer, producer=producer, store=store, metrics=app[METRICS], topics=topics,
                priced_topic=priced, dlq_topic=dlq, totals_topic=totals,
                batch_max_events=settings.batch_max_events, batch_max_ms=settings.batch_max_ms,
                store_bodies=settings.store_bodies, retry_max_delay_s=settings.retry_max_delay_s,
            )
            await ledger.run(settings.kafka_bootstrap_servers)
        finally:
            app[READY].clear()
            await kafka.stop_clients(consumer, producer)

    task = asyncio.create_task(supervise("ledger", run_once))
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def build_app(settings: LedgerSettings) -> web.Application:
    app = web.Application(middlewares=[openai_errors])
    registry = Registry()
    app[SETTINGS] = settings
    app[METRICS] = LedgerMetrics(registry)
    app[READY] = asyncio.Event()
    add_health_routes(app, registry)

    async def kafka_up() -> None:
        if not app[READY].is_set():
            raise ConnectionError("not connected to Kafka yet")
        await kafka.wait_for_broker(settings, timeout=2)

    app[HEALTH_CHECKS]["kafka"] = kafka_up
    app.cleanup_ctx.append(database)
    app.cleanup_ctx.append(consumer_loop)
    return app
