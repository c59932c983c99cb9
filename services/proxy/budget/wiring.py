"""Puts budgets into the proxy app: the entity directory and totals view, the BudgetGuard (the gate
app.py gives the Relay), its gauges, the totals consumer's cleanup context, and the budget leases'
(a small Postgres pool used only by the lease keeper, never on the request path)."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator

import structlog
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from services.proxy.budget.admission import DOUBLE_SETTLEMENTS
from services.proxy.budget.entities import EntityDirectory
from services.proxy.budget.estimate import group_rates
from services.proxy.budget.guard import BudgetGuard
from services.proxy.budget.lease_keeper import LeaseKeeper
from services.proxy.budget.lease_store import PostgresLeaseStore
from services.proxy.budget.totals import TotalsSync, TotalsView
from services.proxy.routing.router import Router
from services.proxy.settings import ProxySettings
from shared.health import METRICS
from shared.metrics import Registry
from shared.pricing import Catalog
from shared.background import background_task
from shared.db import pool as db_pool
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
    registry = app.get(METRICS)
    doubles = registry.counter(*DOUBLE_SETTLEMENTS) if registry is not None else None
    # No connection until a budgeted or rate-limited key first needs a lease.
    pool = db_pool(settings.common.database_url, min_size=0, max_size=2, name="budget-leases")
    keeper = LeaseKeeper(PostgresLeaseStore(pool), holder_id(settings.port, settings.worker), totals,
                         ttl_s=settings.budget_lease_ttl_s)
    guard = BudgetGuard(directory, totals, catalog, group_rates(catalog, router.all_targets()), keeper=keeper,
                        lease_wait_s=settings.budget_lease_wait_s, double_settlements=doubles)
    app[DIRECTORY], app[TOTALS], app[GUARD] = directory, totals, guard
    timeout = settings.key_sync_timeout_s
    app.cleanup_ctx.append(lambda app: _totals_sync(TotalsSync(settings.common, totals), timeout))
    app.cleanup_ctx.append(lambda app: _leases(pool, keeper))
    if registry is not None:
        add_budget_metrics(registry, guard, totals)
    log.info("budgets_installed", holder=keeper.holder)
    return guard


def holder_id(port: int, worker: int) -> str:
    """This worker process as a lease holder: host and port (the replica), worker, and a nonce new at
    every start, so a restarted worker holds nothing it does not know about."""
    return f"{socket.gethostname()}:{port}/{worker}/{uuid.uuid4().hex[:12]}"


async def _leases(pool: AsyncConnectionPool, keeper: LeaseKeeper) -> AsyncIterator[None]:
    """The pool opens without waiting for Postgres (a call short of lease gets 503 while it is down);
    at shutdown, after the calls were drained, every lease is returned before the pool closes."""
    await pool.open(wait=False)
    try:
        async with background_task(supervise("budget_leases", keeper.run), name="budget-leases"):
            yield
        await keeper.close()
    finally:
        await pool.close()


def add_budget_metrics(registry: Registry, guard: BudgetGuard, totals: TotalsView) -> None:
    """What budgets hold, on /metrics: every gauge reads back to 0 when no call is in flight."""
    registry.gauge("proxy_budget_totals", "Ledger totals held in memory", callback=lambda: float(totals.applied))
    registry.gauge("proxy_parallel_requests_held", "max_parallel_requests slots held by calls in flight, over every key",
                   callback=lambda: float(guard.slots_held))
    registry.gauge("proxy_budget_lease_renewals", "Budget lease renewals (and returns) answered by the authority",
                   callback=lambda: float(guard.keeper.renewals))
    registry.gauge("proxy_budget_lease_failures", "Budget lease renewals that could not reach the authority",
                   callback=lambda: float(guard.keeper.failures))
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
