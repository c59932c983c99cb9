"""The reports service's aiohttp app: routes, the Postgres pool and the Kafka producer (for
/global/spend/reset) as cleanup contexts, /health and /metrics."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timezone
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from services.reports.auth import Authenticator
from services.reports.handlers import activity, calculate, global_spend, report, spend, ui, usage
from services.reports.reporting import Reports
from services.reports.settings import ReportsSettings
from services.reports.state import REPORTS, AUTH, CATALOG, CONFIG, PRODUCER, PRODUCER_READY, SETTINGS, STORE
from services.reports.store import ReportsStore
from services.reports.warmup import WarmUp, warm_requests
from shared import db, kafka
from shared.backoff import Backoff
from shared.background import background_task
from shared.config import ProxyConfig
from shared.errors import BadRequest, openai_errors
from shared.health import HEALTH_CHECKS, METRICS, add_health_routes, kafka_check, postgres_check
from shared.master_key import check_master_key
from shared.metrics import Registry
from shared.openapi import add_openapi_route

log = structlog.get_logger(__name__)


async def postgres_pool(app: web.Application) -> AsyncIterator[None]:
    pool = db.pool(app[SETTINGS].database_url, min_size=1, max_size=8)
    await pool.open(wait=False)  # connects in the background; /health says when it answers
    store = ReportsStore(pool)
    app[STORE] = store
    app[REPORTS] = Reports(store)
    app[AUTH] = Authenticator(app[SETTINGS].master_key, store.key, app[SETTINGS].auth_cache_seconds)
    app[HEALTH_CHECKS]["postgres"] = postgres_check(pool)
    yield
    await pool.close()


async def kafka_producer(app: web.Application) -> AsyncIterator[None]:
    producer = kafka.idempotent_producer(app[SETTINGS])
    app[PRODUCER] = producer
    ready = app[PRODUCER_READY] = asyncio.Event()
    app[HEALTH_CHECKS]["kafka"] = kafka_check(producer)

    async def start() -> None:
        backoff = Backoff(0.5, 15.0)
        while True:
            try:
                await producer.start()
                ready.set()
                return
            except Exception as exc:  # noqa: BLE001 - retried with capped backoff, reported by /health
                log.warning("kafka_producer_start_failed", error=f"{type(exc).__name__}: {exc}", retry_in_s=backoff.delay)
            await backoff.sleep()

    async with background_task(start(), name="kafka-producer-start"):
        yield
    await producer.stop()


@web.middleware
async def request_summary(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Binds request_id and writes one summary line per request."""
    request_id = request.headers.get("x-litellm-call-id") or request.headers.get("x-request-id") or str(uuid.uuid4())
    started = time.perf_counter()
    status = 500
    with structlog.contextvars.bound_contextvars(request_id=request_id):
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
            metrics = request.app[METRICS]
            metrics.counter("reports_requests_total", "Requests answered").inc(route=route, status=str(status))
            metrics.counter("reports_request_ms_total", "Milliseconds spent answering").inc(elapsed_ms, route=route)
            log.info("request", method=request.method, path=request.path, status=status, ms=round(elapsed_ms, 2))


@web.middleware
async def no_nul_parameters(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Postgres text cannot hold NUL: refuse it up front with a clear 400."""
    for name, value in request.query.items():
        if "\x00" in name or "\x00" in value:
            raise BadRequest(f"query parameter {name.replace(chr(0), '')!r} contains a NUL character", param=name)
    return await handler(request)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/global/spend/report", report.global_spend_report)
    r.add_get("/global/spend/logs", global_spend.global_spend_logs)
    r.add_get("/global/spend", global_spend.global_spend)
    r.add_get("/global/spend/keys", global_spend.global_spend_keys)
    r.add_get("/global/spend/teams", global_spend.global_spend_teams)
    r.add_get("/global/spend/models", global_spend.global_spend_models)
    r.add_get("/global/spend/provider", global_spend.global_spend_provider)
    r.add_get("/global/spend/all_tag_names", global_spend.global_spend_all_tag_names)
    r.add_get("/global/spend/tags", global_spend.global_spend_tags)
    r.add_post("/global/spend/end_users", global_spend.global_spend_end_users)
    r.add_post("/global/spend/reset", global_spend.global_spend_reset)
    r.add_get("/global/spend/usage", usage.global_spend_usage)
    r.add_get("/global/spend/budgets", usage.global_spend_budgets)
    r.add_get("/spend/logs", spend.spend_logs)
    r.add_get("/spend/logs/ui", spend.spend_logs_ui)
    r.add_get("/spend/tags", spend.spend_tags)
    r.add_get("/spend/keys", spend.spend_keys)
    r.add_get("/spend/users", spend.spend_users)
    r.add_post("/spend/calculate", calculate.spend_calculate)
    r.add_get("/user/daily/activity", activity.user_daily_activity)
    r.add_get("/team/daily/activity", activity.team_daily_activity)
    r.add_get("/tag/daily/activity", activity.tag_daily_activity)
    r.add_get("/ui", ui.usage_page)
    r.add_get("/ui/", ui.usage_page)
    r.add_get("/", ui.to_ui)
    r.add_get("/ui/assets/{filename:.+}", ui.asset)


def add_warm_up(app: web.Application) -> None:
    """Run as the service (__main__), the caches are warmed at start-up (warmup.py); an app built
    in-process (tests) does not know the port it will be served on, and skips it."""
    settings = app[SETTINGS]
    if settings.warm_days > 0 and settings.master_key:
        app.cleanup_ctx.append(warm_caches)


async def warm_caches(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    host = "127.0.0.1" if settings.host in ("", "0.0.0.0", "::") else (f"[{settings.host}]" if ":" in settings.host else settings.host)
    assert settings.master_key is not None
    warm = WarmUp(f"http://{host}:{settings.port}", settings.master_key,
                  warm_requests(datetime.now(timezone.utc).date(), settings.warm_days), settings.warm_timeout_s)
    app[HEALTH_CHECKS]["caches"] = warm.check
    async with background_task(warm.run(), name="warm-caches"):
        yield


def build_app(settings: ReportsSettings, config: ProxyConfig | None = None, catalog: Any = None) -> web.Application:
    """Raises WeakMasterKey for a guessable master key on an address other machines reach."""
    check_master_key(settings.master_key, settings.host, "reports service")
    app = web.Application(middlewares=[request_summary, openai_errors, no_nul_parameters])
    app[SETTINGS] = settings
    app[CONFIG] = config or ProxyConfig()
    app[CATALOG] = catalog
    add_health_routes(app, Registry())
    add_routes(app)
    add_openapi_route(app, Path(__file__).with_name("openapi.yaml"))
    app.cleanup_ctx.append(postgres_pool)
    app.cleanup_ctx.append(kafka_producer)
    return app
