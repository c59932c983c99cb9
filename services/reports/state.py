"""Typed app state shared by the handlers, and the one call every handler starts with."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from services.reports.auth import Authenticator, Caller
from services.reports.reporting import Reports
from services.reports.settings import ReportsSettings
from services.reports.store import ReportsStore
from shared.config import ProxyConfig

REPORTS: web.AppKey[Reports] = web.AppKey("reports", Reports)
SETTINGS: web.AppKey[ReportsSettings] = web.AppKey("settings", ReportsSettings)
CONFIG: web.AppKey[ProxyConfig] = web.AppKey("config", ProxyConfig)
STORE: web.AppKey[ReportsStore] = web.AppKey("store", ReportsStore)
AUTH: web.AppKey[Authenticator] = web.AppKey("auth", Authenticator)
PRODUCER: web.AppKey[Any] = web.AppKey("producer", object)  # AIOKafkaProducer, opened in a cleanup context
PRODUCER_READY: web.AppKey[asyncio.Event] = web.AppKey("producer_ready", asyncio.Event)
CATALOG: web.AppKey[Any] = web.AppKey("catalog", object)  # shared.pricing.Catalog, or None when pricing is absent


async def caller(request: web.Request) -> Caller:
    return await request.app[AUTH].caller(request)


def store(request: web.Request) -> ReportsStore:
    return request.app[STORE]
