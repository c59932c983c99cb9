"""The proxy's app factory and the cleanup contexts of its resources: upstream connection pools,
the usage emitter (Kafka + spool), the key table's sync from the entities topic, the reports
client; then the Relay, built from those once they are open, for the LLM routes to serve with."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiohttp
import orjson
import structlog
from aiohttp import web

from services.proxy.admin.wiring import install_admin
from services.proxy.auth.keys import Authenticator, KeyTable
from services.proxy.budget.estimate import group_rates
from services.proxy.budget.wiring import GUARD, install_budgets
from services.proxy.calls.cost import CostQuoter
from services.proxy.calls.relay import Relay
from services.proxy.calls.routes import LlmRoutes
from services.proxy.calls.settlement import drain
from services.proxy.routing.catalog_follow import install_catalog
from services.proxy.routing.access import access_groups_of
from services.proxy.routing.model_routes import ModelRoutes
from services.proxy.routing.router import Router
from services.proxy.settings import ProxySettings
from services.proxy.sync.key_sync import ENTITY_LISTENERS, KEY_SYNC, KeySync
from services.proxy.transport.fast_routes import install_fast_routes
from services.proxy.transport.http1 import Pool
from services.proxy.transport.reports_forward import REPORTS_SESSION, REPORTS_URL, add_report_routes
from services.proxy.transport.worker_metrics import WorkerMetrics
from services.proxy.usage_log.batching import CachedPartitioner
from services.proxy.usage_log.emitter import UsageEmitter
from services.proxy.usage_log.journal import Journal
from services.proxy.usage_log.spool import Spool
from services.proxy.usage_log.spool_drain import topic_message_limit
from shared import topics
from shared.errors import openai_errors
from shared.background import background_task
from shared.health import HEALTH_CHECKS, METRICS, add_health_routes
from shared.kafka import idempotent_producer
from shared.master_key import check_master_key
from shared.metrics import Registry
from shared.openapi import add_openapi_route
from shared.pricing import Catalog
from shared.pricing.versions import CatalogVersions
from shared.supervise import supervise

log = structlog.get_logger(__name__)

RELAY: web.AppKey[Relay] = web.AppKey("relay", Relay)  # set at start-up by the `llm_relay` context
ROUTES: web.AppKey[LlmRoutes] = web.AppKey("llm_routes", LlmRoutes)
AUTH: web.AppKey[Authenticator] = web.AppKey("authenticator", Authenticator)
ROUTER: web.AppKey[Router] = web.AppKey("router", Router)
QUOTER: web.AppKey[CostQuoter] = web.AppKey("cost_quoter", CostQuoter)
POOLS: web.AppKey[dict[str, Pool]] = web.AppKey("upstream_pools", dict)
KEY_TABLE: web.AppKey[KeyTable] = web.AppKey("key_table", KeyTable)
EMITTER: web.AppKey[UsageEmitter] = web.AppKey("usage_emitter", UsageEmitter)
SETTINGS: web.AppKey[ProxySettings] = web.AppKey("proxy_settings", ProxySettings)

LLM_ROUTES = (
    ("/chat/completions", "chat_completions"),
    ("/completions", "completions"),
    ("/embeddings", "embeddings"),
    ("/images/generations", "image_generations"),
    ("/messages", "messages"),  # Anthropic's Messages API
    ("/messages/count_tokens", "messages_count_tokens"),
    ("/responses", "responses"),  # OpenAI's Responses API
)
TALLY_VERSION = "tally-0.1.0"  # where LiteLLM answers its own version
LLM_PATHS = tuple(prefix + path for prefix in ("", "/v1") for path, _name in LLM_ROUTES)


def build_app(settings: ProxySettings, catalog: Catalog, env: Mapping[str, str] | None = None) -> web.Application:
    """`env` supplies provider keys the config leaves out (OPENAI_API_KEY, ...), read once here."""
    check_master_key(settings.master_key, settings.common.host, "proxy")
    app = web.Application(middlewares=[openai_errors], client_max_size=int(settings.max_request_size_mb * 1024 * 1024))
    registry = Registry()
    add_health_routes(app, registry)
    keys = KeyTable(access_groups_of(settings.config.model_list))
    router = Router.from_config(settings.config, env or {})
    auth = Authenticator(settings.master_key, keys)
    routes = LlmRoutes()  # its Relay comes at start-up (the `llm_relay` context)
    app[SETTINGS] = settings
    app[KEY_TABLE] = keys
    catalogs = CatalogVersions(catalog)  # the current version follows the catalog topic
    app[AUTH], app[ROUTER], app[QUOTER], app[ROUTES] = auth, router, CostQuoter(catalogs), routes
    install_catalog(app, settings, catalogs, auth)
    guard = install_budgets(app, settings, catalog, router)

    def budget_prices(current: Catalog) -> None:  # upper-bound estimates follow the catalog too
        guard.catalog, guard.rates = current, group_rates(current, router.all_targets())

    catalogs.listeners.append(budget_prices)
    install_admin(app, settings, keys, guard)
    app[ENTITY_LISTENERS] = [guard.directory.apply]
    app[REPORTS_URL] = settings.reports_url

    for prefix in ("", "/v1"):
        for path, name in LLM_ROUTES:
            app.router.add_post(prefix + path, getattr(routes, name))
        app.router.add_get(prefix + "/responses/{response_id}", routes.responses_retrieve)
    ModelRoutes(settings.config.model_list, catalogs, auth).install(app)
    # Azure-style clients: /openai/deployments/{model}/chat/completions
    app.router.add_post("/openai/deployments/{model}/chat/completions", routes.chat_completions)
    app.router.add_get("/health/liveliness", liveliness)
    app.router.add_get("/health/liveness", liveliness)
    app.router.add_get("/health/readiness", readiness)
    add_report_routes(app, auth)
    add_openapi_route(app, Path(__file__).with_name("openapi.yaml"))

    registry.gauge("proxy_keys", "Virtual keys in the in-memory table", callback=lambda: float(len(keys)))
    # In this order: the Relay is built last, from what the contexts before it opened.
    app.cleanup_ctx.extend([upstream_pools, usage_emitter, key_sync, reports_session, llm_relay])
    if settings.workers > 1:
        app.cleanup_ctx.append(worker_metrics)
    app.on_startup.append(fast_llm_routes)
    app.on_shutdown.append(drain_calls)
    return app


async def drain_calls(app: web.Application) -> None:
    """Shutdown, once the listener is closed and before aiohttp's own wait and any cleanup context
    (the usage emitter's flush among them): new calls are refused, calls in flight get the drain
    time to finish, and those still running are cancelled and record themselves as failures."""
    relay, drain_s = app.get(RELAY), app[SETTINGS].shutdown_drain_s
    if relay is None:  # start-up failed before the Relay was built: no call was taken
        return
    relay.stopping = True
    in_flight = relay.book.in_flight
    finished, cancelled = await drain(relay.book.tasks | relay.background, drain_s)
    log.info("proxy_calls_drained", in_flight=in_flight, finished=finished, cancelled=cancelled, drain_s=drain_s,
             unsettled=relay.book.in_flight)


async def worker_metrics(app: web.Application) -> AsyncIterator[None]:
    """/metrics shows every worker's series (worker_metrics.py)."""
    settings = app[SETTINGS]
    shared = WorkerMetrics(app[METRICS], settings.spool_root / "metrics", settings.worker, settings.workers)
    async with background_task(shared.run(), name="worker-metrics"):
        yield


async def fast_llm_routes(app: web.Application) -> None:
    """The LLM routes skip aiohttp's per-request router walk and middleware look-up (fast_routes.py)."""
    install_fast_routes(app, LLM_PATHS)


async def upstream_pools(app: web.Application) -> AsyncIterator[None]:
    """One keep-alive connection pool per upstream origin, reused by every call to it."""
    settings = app[SETTINGS]
    pools: dict[str, Pool] = {}
    for target in app[ROUTER].all_targets():
        if target.origin not in pools:
            pools[target.origin] = Pool(target.origin, limit=settings.upstream_connections, limits=settings.upstream_limits)
    app[POOLS] = pools
    yield
    await asyncio.gather(*(pool.close() for pool in pools.values()))
    pools.clear()


async def usage_emitter(app: web.Application) -> AsyncIterator[None]:
    """The usage log (docs/usage-log.md); its check is /health's "kafka", its refusal() the relay's."""
    settings = app[SETTINGS]
    common = settings.common
    topic = common.topic(topics.USAGE)
    emitter = UsageEmitter(
        topic,
        lambda: idempotent_producer(common, request_timeout_ms=10000, linger_ms=20, partitioner=CachedPartitioner()),
        Spool(settings.spool_path),
        app[METRICS],
        journal=Journal(settings.spool_path),
        queue_size=settings.usage_queue_size,
        stall_after_s=settings.stall_after_s,
        message_limit=lambda: topic_message_limit(common.kafka_bootstrap_servers, topic),
    )
    app[EMITTER] = emitter
    app[HEALTH_CHECKS]["kafka"] = emitter.check
    await emitter.start()
    yield
    await emitter.close()


async def key_sync(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    sync = KeySync(settings.common, app[KEY_TABLE], listeners=app[ENTITY_LISTENERS])
    app[KEY_SYNC] = sync
    async with background_task(supervise("key_sync", sync.run), name="key-sync"):  # restarted on any failure
        if settings.key_sync_timeout_s > 0:
            try:
                await asyncio.wait_for(sync.caught_up.wait(), settings.key_sync_timeout_s)
            except asyncio.TimeoutError:
                log.warning("key_table_not_synced", waited_s=settings.key_sync_timeout_s,
                            hint="virtual keys answer 401 until the entities topic is read; the master key works")
        yield


async def llm_relay(app: web.Application) -> AsyncIterator[None]:
    """The Relay, given the collaborators the contexts before this one opened, and handed to the
    LLM routes. Nothing to close: drain_calls (on_shutdown) ends its calls."""
    relay = Relay(app[SETTINGS], app[ROUTER], app[AUTH], app[QUOTER], gate=app[GUARD], emitter=app[EMITTER],
                  pools=app[POOLS], key_sync=app[KEY_SYNC], registry=app[METRICS])
    app[RELAY] = app[ROUTES].relay = relay
    yield


async def reports_session(app: web.Application) -> AsyncIterator[None]:
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
    app[REPORTS_SESSION] = session
    yield
    await session.close()


async def liveliness(request: web.Request) -> web.Response:
    return web.json_response("I'm alive!")


async def readiness(request: web.Request) -> web.Response:
    """Ready when the key table has caught up and the usage log can be written; Kafka being down
    only means events are spooled."""
    keys, emitter = request.app[KEY_TABLE], request.app[EMITTER]
    body = {
        # LiteLLM's fields first ("db": where its keys live; Tally's live in the key table).
        "status": "healthy" if keys.synced else "unhealthy",
        "db": "connected" if keys.synced else "Not connected",
        "cache": None,
        "litellm_version": TALLY_VERSION,
        "success_callbacks": [],
        "catalog_version": request.app[QUOTER].version,
        "key_table": "synced" if keys.synced else "syncing",
        "keys": len(keys),
        "kafka": "connected" if emitter.healthy else "unreachable (spooling usage events)",
        "spool_pending": emitter.spool.pending,
        "usage_log": emitter.refusal() or "writable",
    }
    ready = keys.synced and emitter.refusal() is None  # calls would be refused: send traffic elsewhere
    if not ready:
        body["status"] = "unhealthy"
    return web.Response(body=orjson.dumps(body), status=200 if ready else 503, content_type="application/json")
