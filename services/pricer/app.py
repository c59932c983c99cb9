"""The pricer's aiohttp app: /health and /metrics, and the pricing loop as a supervised task."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from aiohttp import web
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import ProducerFenced

from services.pricer.consumer import Pricer, PricerMetrics, SetAside
from services.pricer.settings import PricerSettings
from shared import db, kafka
from shared.background import background_task
from shared.errors import openai_errors
from shared.health import StageProgress, add_health_routes, add_stage_checks
from shared.metrics import Registry
from shared.pricing import Catalog
from shared.pricing.feed import CatalogFeed, following_catalog
from shared.pricing.versions import CatalogVersions
from shared.quarantine import QuarantineStore
from shared.record_limits import MAX_RECORD_BYTES
from shared.stage_monitor import monitor
from shared.supervise import supervise
from shared.topics import USAGE

SETTINGS: web.AppKey[PricerSettings] = web.AppKey("settings", PricerSettings)
CATALOGS: web.AppKey[CatalogVersions] = web.AppKey("catalogs", CatalogVersions)
CATALOG_FEED: web.AppKey[CatalogFeed] = web.AppKey("catalog_feed", CatalogFeed)
METRICS: web.AppKey[PricerMetrics] = web.AppKey("pricer_metrics", PricerMetrics)
READY: web.AppKey[asyncio.Event] = web.AppKey("ready", asyncio.Event)
PROGRESS: web.AppKey[StageProgress] = web.AppKey("progress", StageProgress)
QUARANTINE: web.AppKey[QuarantineStore] = web.AppKey("quarantine", QuarantineStore)

# aiokafka keeps one produce request in flight per broker, carrying one record batch per
# partition: at 256 KB (~180 priced events) a batch of 2,000 usage events from one partition took
# a dozen round trips. Just under the broker's and topics' default max.message.bytes (1,048,588).
PRICED_BATCH_BYTES = MAX_RECORD_BYTES


async def pricing_loop(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    set_aside = SetAside()

    async def run_once() -> None:
        producer = kafka.idempotent_producer(
            settings, transactional_id=settings.transactional_id, linger_ms=2, max_batch_size=PRICED_BATCH_BYTES
        )
        consumer = kafka.consumer(settings, group_id=settings.group_id, session_timeout_ms=6000, heartbeat_interval_ms=1500)
        pricer = Pricer(settings, app[CATALOGS], consumer, producer, app[METRICS], app[QUARANTINE], set_aside,
                        catalog_feed=app[CATALOG_FEED])
        consumer.subscribe([settings.topic(USAGE)], listener=pricer)  # it settles its transaction on a rebalance
        try:
            await producer.start()
            await consumer.start()
            app[READY].set()
            await pricer.run()
        except Exception as exc:
            app[PROGRESS].note_error(f"{type(exc).__name__}: {exc}", time.time())  # for /health; supervise logs it
            raise
        finally:
            app[READY].clear()
            await kafka.stop_clients(consumer, producer)

    async def committed_offsets() -> dict[tuple[str, int], int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=5000)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(settings.group_id)
        finally:
            await admin.close()
        return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items() if meta.offset >= 0}

    # On cleanup the cancelled loop still lets its transaction in flight finish (Pricer.run), inside
    # the task: cancelling and awaiting it is all shutdown takes.
    async with (background_task(supervise("pricer", run_once, fatal=(ProducerFenced,)), name="pricer"),
                background_task(monitor(settings, [settings.topic(USAGE)], committed_offsets, app[PROGRESS],
                                        app[METRICS].lag, settings.progress_interval_s), name="pricer-progress")):
        yield


async def catalog_feed(app: web.Application) -> AsyncIterator[None]:
    """The current price catalog and its older versions, from the catalog topic (docs/pricer.md)."""
    settings = app[SETTINGS]
    feed = CatalogFeed(settings, app[CATALOGS], settings.price_maps)
    app[CATALOG_FEED] = feed
    async with following_catalog(feed, settings.catalog_sync_timeout_s, settings.price_map_poll_s):
        yield


async def quarantine_pool(app: web.Application) -> AsyncIterator[None]:
    """A small pool, for the quarantine only: the pricer keeps nothing else in Postgres."""
    settings = app[SETTINGS]
    pool = db.pool(settings.database_url, min_size=0, max_size=2)
    await pool.open(wait=False)  # Postgres is needed only when a record must be quarantined
    app[QUARANTINE] = QuarantineStore(pool, "pricer", create_tables_in=settings.database_url)
    yield
    await pool.close()


def build_app(settings: PricerSettings, catalog: Catalog) -> web.Application:
    app = web.Application(middlewares=[openai_errors])
    registry = Registry()
    app[SETTINGS] = settings
    app[CATALOGS] = catalogs = CatalogVersions(catalog)
    app[METRICS] = PricerMetrics(registry)
    app[READY] = asyncio.Event()
    app[PROGRESS] = progress = StageProgress("pricer", settings.stall_after_s)
    registry.gauge("pricer_catalog_entries", "Models in the price catalog", callback=lambda: float(len(catalogs.current)))
    registry.gauge("pricer_last_progress_timestamp_seconds", "When the pricer's committed offsets last advanced (Unix time)",
                   callback=lambda: progress.last_progress_at)
    add_health_routes(app, registry)
    add_stage_checks(app, settings, "pricer", app[READY], progress)
    app.cleanup_ctx.append(quarantine_pool)
    app.cleanup_ctx.append(catalog_feed)
    app.cleanup_ctx.append(pricing_loop)
    return app
