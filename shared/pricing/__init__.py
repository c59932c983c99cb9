"""Pricing: the price catalog (LiteLLM's JSON format) and the one pure function that prices a call.

    catalog = load_catalog(*user_price_files)          # once, at start-up
    result = price_usage_event(catalog, usage_event)   # per call: cost, priced_model, unpriced
    catalog.version                                    # record it next to every priced cost
"""

from shared.pricing.catalog import DEFAULT_CATALOG_PATH, Catalog, CatalogError, load_catalog, parse_price_text
from shared.pricing.compute import (
    UNPRICED,
    CallParts,
    InconsistentUsage,
    PriceableCall,
    PriceResult,
    price,
    price_usage_event,
)
from shared.pricing.resolve import CUSTOM, resolve_entry

__all__ = [
    "CUSTOM",
    "DEFAULT_CATALOG_PATH",
    "UNPRICED",
    "CallParts",
    "Catalog",
    "CatalogError",
    "InconsistentUsage",
    "PriceResult",
    "PriceableCall",
    "load_catalog",
    "parse_price_text",
    "price",
    "price_usage_event",
    "resolve_entry",
]
