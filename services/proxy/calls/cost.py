"""The cost quoted in x-litellm-response-cost: exactly shared.pricing.price_usage_event, the
function the pricer uses, on the same event, so header and ledger agree to the last digit.

`quote_usage` prices usage that is not final yet (a stream's usage chunks before its last) without
building an event: the same function on the same fields, so the last chunk's cost equals the cost
`quote` gives the recorded event."""

from __future__ import annotations

from decimal import Decimal

import structlog

from services.proxy.routing.router import Target
from services.proxy.usage_log.record import with_fields
from shared.events import TokenUsage, UsageEvent
from shared.pricing import CallParts, Catalog, InconsistentUsage, price_usage_event
from shared.pricing.versions import CatalogVersions

log = structlog.get_logger(__name__)


class CostQuoter:
    """Quotes under the current catalog version (it follows the catalog topic: docs/pricer.md)."""

    def __init__(self, catalogs: CatalogVersions | Catalog) -> None:
        self.catalogs = catalogs if isinstance(catalogs, CatalogVersions) else CatalogVersions(catalogs)

    @property
    def catalog(self) -> Catalog:
        return self.catalogs.current

    @property
    def version(self) -> str:
        return self.catalogs.current.version

    def quote(self, event: UsageEvent) -> tuple[UsageEvent, Decimal | None]:
        """The event with quoted_cost and the catalog version filled in, and the cost. A call the
        pricer would reject (inconsistent usage) is quoted as None: no header, no quoted cost.
        The event names the version that quoted it; the pricer prices it under that version."""
        catalog = self.catalogs.current
        try:
            result = price_usage_event(catalog, event)
        except InconsistentUsage as exc:
            log.warning("usage_not_priceable", request_id=event.request_id, error=str(exc))
            return event, None
        cost = result.cost.total
        return with_fields(event, quoted_cost=cost, quoted_catalog_version=catalog.version), cost

    def quote_usage(self, target: Target, call_type: str, usage: TokenUsage, response_model: str | None) -> Decimal | None:
        """What `quote` would give the call's event with this usage; settles and records nothing."""
        parts = CallParts(model=target.model, usage=usage, call_type=call_type, base_model=target.base_model,
                          response_model=response_model, custom_llm_provider=target.provider,
                          custom_prices=target.custom_prices)
        try:
            return price_usage_event(self.catalog, parts).cost.total
        except InconsistentUsage:
            return None  # logged once, when the final usage is quoted
