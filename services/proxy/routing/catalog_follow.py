"""The proxy's side of price catalog versions (docs/pricer.md): each worker follows the catalog
topic, so its cost header switches with every published version, and `POST
/reload/model_cost_map` (LiteLLM's route, admin only) publishes what the price files say now."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from aiokafka.errors import KafkaError

from services.proxy.auth.keys import Authenticator
from services.proxy.errors import ConfigurationError, PermissionDenied, ServiceUnavailable
from services.proxy.settings import ProxySettings
from shared.events import utcnow
from shared.pricing import CatalogError
from shared.pricing.feed import CatalogFeed, following_catalog
from shared.pricing.versions import CatalogVersions

CATALOG_FEED: web.AppKey[CatalogFeed] = web.AppKey("catalog_feed", CatalogFeed)
CATALOG_AUTH: web.AppKey[Authenticator] = web.AppKey("catalog_auth", Authenticator)
CATALOG_SETTINGS: web.AppKey[ProxySettings] = web.AppKey("catalog_settings", ProxySettings)


def install_catalog(app: web.Application, settings: ProxySettings, catalogs: CatalogVersions, auth: Authenticator) -> None:
    """Before the other cleanup contexts: the catalog is current before the first call is quoted."""
    app[CATALOG_FEED] = CatalogFeed(settings.common, catalogs, settings.price_maps)
    app[CATALOG_AUTH], app[CATALOG_SETTINGS] = auth, settings
    app.router.add_post("/reload/model_cost_map", reload_model_cost_map)
    app.cleanup_ctx.append(_follow_catalog)


async def _follow_catalog(app: web.Application) -> AsyncIterator[None]:
    settings = app[CATALOG_SETTINGS]
    async with following_catalog(app[CATALOG_FEED], settings.key_sync_timeout_s, settings.price_map_poll_s):
        yield


async def reload_model_cost_map(request: web.Request) -> web.Response:
    """Read the price files again and publish them as the current version (if they changed);
    answers once this worker has switched. The other workers and the pricer follow the topic."""
    caller = request.app[CATALOG_AUTH].authenticate(request.headers)
    if not caller.is_master:
        raise PermissionDenied("Access denied. Admin role required.")
    feed = request.app[CATALOG_FEED]
    try:
        catalog = await feed.publish_files("reload")
    except CatalogError as exc:
        raise ConfigurationError(f"Failed to reload model cost map: {exc}") from exc
    except (KafkaError, OSError) as exc:
        raise ServiceUnavailable(f"Failed to reload model cost map: the catalog topic is unreachable ({exc})") from exc
    return web.json_response({
        "status": "success",
        "message": f"Price data reloaded successfully! {len(catalog)} models updated.",
        "timestamp": utcnow().isoformat(),
        "models_count": len(catalog),
        "catalog_version": catalog.version,
    })
