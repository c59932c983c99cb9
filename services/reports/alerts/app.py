"""The alerts process's app (`python -m services.reports alerts`): the Postgres pool, the HTTP
session, the follower, the sender and the spend reports as cleanup contexts; /health and /metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from services.reports.alerts.delivery import DeliveryMetrics, Sender
from services.reports.alerts.follower import AlertFollower
from services.reports.alerts.settings import AlertSettings, channel_urls
from services.reports.alerts.spend_report import SpendReporter
from services.reports.alerts.store import AlertStore
from services.reports.store import ReportsStore
from shared import db
from shared.background import background_task
from shared.health import HEALTH_CHECKS, add_health_routes, postgres_check
from shared.metrics import Registry
from shared.supervise import supervise

SETTINGS: web.AppKey[AlertSettings] = web.AppKey("alert_settings", AlertSettings)
STORE: web.AppKey[AlertStore] = web.AppKey("alert_store", AlertStore)
METRICS: web.AppKey[DeliveryMetrics] = web.AppKey("alert_metrics", DeliveryMetrics)
SENDER: web.AppKey[Sender] = web.AppKey("alert_sender", Sender)


async def postgres_pool(app: web.Application) -> AsyncIterator[None]:
    pool = db.pool(app[SETTINGS].database_url, min_size=1, max_size=4, name="alerts")
    await pool.open(wait=False)
    app[STORE] = AlertStore(pool)
    app[HEALTH_CHECKS]["postgres"] = postgres_check(pool)
    yield
    await pool.close()


async def sender(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with aiohttp.ClientSession() as session:
        app[SENDER] = Sender(app[STORE], session, channel_urls(settings), secret=settings.webhook_secret,
                             max_attempts=settings.max_attempts, retry_first_s=settings.retry_first_s,
                             retry_cap_s=settings.retry_cap_s, timeout_s=settings.send_timeout_s, metrics=app[METRICS])
        async with background_task(supervise("alerts_sender", lambda: app[SENDER].run(settings.poll_interval_s)), name="alerts_sender"):
            yield


async def follower(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    following = AlertFollower(settings, app[STORE], settings.rules, settings.channels, on_decided=app[SENDER].wake.set)
    app[HEALTH_CHECKS]["entities_read"] = _caught_up_check(following)
    async with background_task(supervise("alerts_follower", following.run), name="alerts_follower"):
        yield


async def spend_reports(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if settings.spend_report_days is None:
        yield
        return
    reporter = SpendReporter(app[STORE], ReportsStore(app[STORE].pool), settings.spend_report_days, settings.channels,
                             app[SENDER].wake.set)
    async with background_task(supervise("alerts_spend_reports", lambda: reporter.run(settings.report_check_interval_s)),
                               name="alerts_spend_reports"):
        yield


def _caught_up_check(following: AlertFollower):  # noqa: ANN202 - a HealthCheck
    async def check() -> None:
        if not following.caught_up.is_set():
            raise ConnectionError("entities.v1 not read to its end yet")

    return check


def build_app(settings: AlertSettings) -> web.Application:
    app = web.Application()
    app[SETTINGS] = settings
    registry = Registry()
    add_health_routes(app, registry)
    app[METRICS] = DeliveryMetrics(registry)
    app.cleanup_ctx.append(postgres_pool)
    app.cleanup_ctx.append(sender)
    app.cleanup_ctx.append(follower)
    app.cleanup_ctx.append(spend_reports)
    return app
