"""The cost quoted in x-litellm-response-cost: exactly shared.pricing.price_usage_event, the
function the pricer uses, on the same event, so header and ledger agree to the last digit."""

from __future__ import annotations

from decimal import Decimal

import structlog

from services.proxy.record import with_fields
from shared.events import UsageEvent
from shared.pricing import Catalog, InconsistentUsage, price_usage_event

log = structlog.get_logger(__name__)


class CostQuoter:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.version = catalog.version

    def quote(self, event: UsageEvent) -> tuple[UsageEvent, Decimal | None]:
        """The event with quoted_cost and the catalog version filled in, and the cost. A call the
        pricer would reject (inconsistent usage) is quoted as None: no header, no quoted cost."""
        try:
            result = price_usage_event(self.catalog, event)
        except InconsistentUsage as exc:
            log.warning("usage_not_priceable", request_id=event.request_id, error=str(exc))
            return event, None
        cost = result.cost.total
        return with_fields(event, quoted_cost=cost, quoted_catalog_version=self.version), cost
