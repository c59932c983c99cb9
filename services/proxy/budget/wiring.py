"""Puts budgets into the proxy app: the entity directory and totals view, the BudgetGuard (the gate
app.py gives the Relay), its gauges, and the totals consumer's cleanup context."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from services.proxy.budget.admission import DOUBLE_SETTLEMENTS
from services.proxy.budget.entities import EntityDirectory
from services.proxy.budget.estimate import group_rates
from services.proxy.budget.guard import BudgetGuard
from services.proxy.budget.totals import TotalsSync, TotalsView
from services.proxy.routing.router import Router
from services.proxy.settings import ProxySettings
from shared.health import METRICS
from shared.metrics import Registry
from shared.pricing import Catalog
from shared.background import background_task
from shared.supervise import supervise

log = structlog.get_logger(__name__)

DIRECTORY: web.AppKey[EntityDirectory] = web.AppKey("entity_directory", EntityDirectory)
TOTALS: web.AppKey[TotalsView] = web.AppKey("totals_view", TotalsView)
GUARD: web.AppKey[BudgetGuard] = web.AppKey("budget_guard", BudgetGuard)


def install_budgets(app: web.Application, settings: ProxySettings, catalog: Catalog, router: Router) -> BudgetGuard:
    """Returns the guard, the Relay's budget gate; its directory (app[DIRECTORY]) is fed by the
    entities consumer (EntityChanged and SpendReset)."""
    directory = EntityDirectory()
    totals = TotalsView()
    replicas = settings.budget_processes
    registry = app.get(METRICS)
    doubles = registry.counter(*DOUBLE_SETTLEMENTS) if registry is not None else None
    guard = BudgetGuard(directory, totals, catalog, group_rates(catalog, router.all_targets()), replicas=replicas,
                        double_settlements=doubles)
    app[DIRECTORY], app[TOTALS], app[GUARD] = directory, totals, guard
    timeout = settings.key_sync_timeout_s
    app.cleanup_ctx.append(lambda app: _totals_sync(TotalsSync(settings.common, totals), timeout))
    if registry is not None:
        add_budget_metrics(registry, guard, totals)
    log.info("budgets_installed", replicas=replicas)
    return guard


def add_budget_metrics(registry: Registry, guard: BudgetGuard, totals: TotalsView) -> None:
    """What budgets hold, on /metrics: every gauge reads back to 0 when no call is in flight."""
    registry.gauge("proxy_budget_totals", "Ledger totals held in memory", callback=lambda: float(totals.applied))
    registry.gauge("proxy_parallel_requests_held", "max_parallel_requests slots held by calls in flight, over every key",
                   callback=lambda: float(guard.limiter.held))
    registry.gauge("proxy_budget_reserved", "Budget reservations of calls in flight, summed over every account (display only)",
                   callback=lambda: float(guard.reserved_total()))


async def _totals_sync(sync: TotalsSync, timeout: float) -> AsyncIterator[None]:
    """Read the totals topic; start-up waits (up to `timeout`) until it has caught up."""
    async with background_task(supervise("totals_sync", sync.run), name="totals-sync"):  # restarted on any failure
        if timeout > 0:
            try:
                await asyncio.wait_for(sync.caught_up.wait(), timeout)
            except asyncio.TimeoutError:
                log.warning("totals_not_synced", waited_s=timeout, hint="budgets count only this replica's spend until it is")
        yield
