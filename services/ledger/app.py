"""The ledger's aiohttp app: /health and /metrics, the Postgres pool, and the consumer loop as a
supervised task (restarted with backoff if Kafka goes away)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from services.ledger.consumer import Ledger, topics_for
from services.ledger.holder_spend import prune_loop
from services.ledger.metrics import LedgerMetrics
from services.ledger.retention import retention_loop
from services.ledger.settings import LedgerSettings
from services.ledger.store import LedgerStore, make_pool
from shared import kafka
from shared.background import background_task
from shared.errors import openai_errors
from shared.health import HEALTH_CHECKS, StageProgress, add_health_routes, add_stage_checks, postgres_check
from shared.metrics import Registry
from shared.migrations import migrate
from shared.stage_monitor import monitor
from shared.supervise import supervise

SETTINGS: web.AppKey[LedgerSettings] = web.AppKey("settings", LedgerSettings)
POOL: web.AppKey[AsyncConnectionPool] = web.AppKey("pool", AsyncConnectionPool)
METRICS: web.AppKey[LedgerMetrics] = web.AppKey("ledger_metrics", LedgerMetrics)
READY: web.AppKey[asyncio.Event] = web.AppKey("ready", asyncio.Event)
PROGRESS: web.AppKey[StageProgress] = web.AppKey("progress", StageProgress)


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
        # Offsets live in Postgres; Kafka's group only splits the partitions between ledgers.
        consumer = kafka.consumer(settings, group_id=settings.topic(settings.consumer_name), max_poll_records=settings.batch_max_events,
                                  session_timeout_ms=settings.session_timeout_ms)
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
            await ledger.run(settings.kafka_bootstrap_servers, group=True)
        except Exception as exc:
            app[PROGRESS].note_error(f"{type(exc).__name__}: {exc}", time.time())  # for /health; supervise logs it
            raise
        finally:
            app[READY].clear()
            await kafka.stop_clients(consumer, producer)

    async def stored_offsets() -> dict[tuple[str, int], int]:
        return await LedgerStore(app[POOL], settings.consumer_name, store_bodies=settings.store_bodies).load_offsets()

    # On cleanup the cancelled loop still lets its batch in flight commit (Ledger.pump), inside
    # the task: cancelling and awaiting it is all shutdown takes.
    async with (background_task(supervise("ledger", run_once), name="ledger"),
                background_task(monitor(settings, topics, stored_offsets, app[PROGRESS], app[METRICS].lag,
                                        settings.progress_interval_s), name="ledger-progress"),
                background_task(_retention(app), name="ledger-retention"),
                background_task(_prune_holder_spend(app), name="ledger-holder-spend-prune")):
        yield


async def _retention(app: web.Application) -> None:
    days = app[SETTINGS].spend_log_retention_days
    if days is not None:
        await app[READY].wait()  # the migrations are applied
        await retention_loop(app[POOL], days)


async def _prune_holder_spend(app: web.Application) -> None:
    await app[READY].wait()  # the migrations are applied
    await prune_loop(app[POOL])


def build_app(settings: LedgerSettings) -> web.Application:
    app = web.Application(middlewares=[openai_errors])
    registry = Registry()
    app[SETTINGS] = settings
    app[METRICS] = LedgerMetrics(registry)
    app[READY] = asyncio.Event()
    app[PROGRESS] = progress = StageProgress("ledger", settings.stall_after_s)
    registry.gauge("ledger_last_progress_timestamp_seconds", "When the ledger's stored offsets last advanced (Unix time)",
                   callback=lambda: progress.last_progress_at)
    add_health_routes(app, registry)
    add_stage_checks(app, settings, "ledger", app[READY], progress)
    app.cleanup_ctx.append(database)
    app.cleanup_ctx.append(consumer_loop)
    return app
