"""The pricer's pure step: one raw usage message in, a priced event or a dead-letter reason out."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from shared.events import PricedUsageEvent, UnknownEventVersion, UsageEvent, decode_as
from shared.pricing import Catalog, InconsistentUsage, price_usage_event


@dataclass(frozen=True)
class Rejected:
    reason: str


def price_message(catalog: Catalog, raw: bytes | None) -> PricedUsageEvent | Rejected:
    if not raw:
        return Rejected("empty message")
    try:
        usage = decode_as(UsageEvent, raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "event"
        return Rejected(f"invalid usage event: {where}: {first['msg']}")
    except (UnknownEventVersion, ValueError) as exc:
        return Rejected(f"unreadable usage event: {exc}")
    try:
        result = price_usage_event(catalog, usage)
    except InconsistentUsage as exc:
        return Rejected(f"inconsistent usage: {exc}")
    return PricedUsageEvent(
        event_id=usage.request_id,  # one priced event per request: its id is the request id
        usage_event=usage,
        cost=result.cost,
        priced_model=result.priced_model,
        unpriced=result.unpriced,
        catalog_version=catalog.version,
    )
