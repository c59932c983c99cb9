"""Puts the admin routes into the proxy app: the entities publisher (its connection as a cleanup
context) and LiteLLM's management routes, which change the budget guard's directory."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from services.proxy.admin.publisher import EntityPublisher
from services.proxy.admin.context import AdminContext
from services.proxy.admin.routes import add_admin_routes
from services.proxy.auth.keys import KeyTable
from services.proxy.budget.guard import BudgetGuard
from services.proxy.settings import ProxySettings
from shared.background import background_task
from shared.events import EntityChanged, SpendReset
from shared.supervise import supervise

PUBLISHER: web.AppKey[EntityPublisher] = web.AppKey("entity_publisher", EntityPublisher)


def install_admin(app: web.Application, settings: ProxySettings, keys: KeyTable, guard: BudgetGuard) -> None:
    """An admin change is applied to this process's key table and entity directory as soon as
    Kafka has it, before the entities topic brings it back."""

    def apply_key(change: EntityChanged | SpendReset) -> None:
        if isinstance(change, EntityChanged):
            keys.apply_here(change)

    publisher = EntityPublisher(settings.common, [apply_key, guard.directory.apply_here])
    app[PUBLISHER] = publisher
    add_admin_routes(app, AdminContext(settings.master_key, guard.directory, guard, publisher))
    app.cleanup_ctx.append(_entity_publisher)


async def _entity_publisher(app: web.Application) -> AsyncIterator[None]:
    publisher = app[PUBLISHER]
    async with background_task(supervise("entities_publisher", publisher.connect), name="entities-publisher"):
        yield
    await publisher.close()
