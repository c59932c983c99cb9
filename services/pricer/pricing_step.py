"""The pricer's pure step: one raw usage message in, a priced message or a dead-letter reason out.

An event the proxy quoted under a catalog version is priced under that version (the cost header
and the spend log agree, and a replay prices as the original run did); an event that names none
is priced under the current version. A version this process has not read yet is `VersionUnknown`:
the consumer reads the catalog topic and asks again, then with `unknown_ok`."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import orjson
from pydantic import ValidationError

from shared.events import UnknownEventVersion, UsageEvent, decode_as
from shared.pricing import InconsistentUsage, PriceResult, price_usage_event
from shared.pricing.versions import CatalogVersions

_CURRENT_USAGE = b'"schema_version":1'


@dataclass(frozen=True, slots=True)
class Priced:
    request_id: str
    unpriced: bool
    value: bytes  # the PricedUsageEvent's JSON


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str


@dataclass(frozen=True, slots=True)
class VersionUnknown:
    version: str


def price_message(catalogs: CatalogVersions, raw: bytes | None, priced_at: str,
                  unknown_ok: bool = False) -> Priced | Rejected | VersionUnknown:
    """`priced_at` is the ISO time stamp the priced event carries; the consumer takes it once per
    batch (a clock read and its formatting cost as much as the pricing itself)."""
    if not raw:
        return Rejected("empty message")
    try:
        usage, current = _read_usage(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "event"
        return Rejected(f"invalid usage event: {where}: {first['msg']}")
    except (UnknownEventVersion, ValueError) as exc:
        return Rejected(f"unreadable usage event: {exc}")
    catalog = catalogs.current
    quoted = usage.quoted_catalog_version
    if quoted is not None and quoted != catalog.version:
        found = catalogs.get(quoted)
        if found is not None:
            catalog = found
        elif not unknown_ok:
            return VersionUnknown(quoted)
    try:
        result = price_usage_event(catalog, usage)
    except InconsistentUsage as exc:
        return Rejected(f"inconsistent usage: {exc}")
    usage_json = raw if current else usage.__pydantic_serializer__.to_json(usage)
    value = priced_json(usage.request_id, usage_json, result, catalog.version, priced_at)
    return Priced(usage.request_id, result.unpriced, value)


def _read_usage(raw: bytes) -> tuple[UsageEvent, bool]:
    """Validate straight from JSON when the event is the current version (the hot path);
    otherwise parse, upcast and validate. The flag says whether `raw` is already current."""
    if _CURRENT_USAGE in raw:
        try:
            return UsageEvent.model_validate_json(raw), True
        except ValidationError:
            pass  # fall through: the slow path reports the error (or upcasts)
    return decode_as(UsageEvent, raw), False


def priced_json(request_id: str, usage_json: bytes, result: PriceResult, catalog_version: str, priced_at: str) -> bytes:
    """A PricedUsageEvent's JSON, with the already-validated usage event's bytes embedded as they
    are instead of being re-encoded (tests check it decodes to the same model)."""
    cost = result.cost
    head = orjson.dumps({
        "event_id": request_id,  # one priced event per request: its id is the request id
        "type": "priced_usage",
        "schema_version": 1,
        "cost": {
            "input": plain(cost.input), "output": plain(cost.output),
            "cache_read": plain(cost.cache_read), "cache_creation": plain(cost.cache_creation),
            "reasoning": plain(cost.reasoning), "images": plain(cost.images),
            "other": plain(cost.other), "total": plain(cost.total),
        },
        "priced_model": result.priced_model,
        "unpriced": result.unpriced,
        "catalog_version": catalog_version,
        "priced_at": priced_at,
    })
    return head[:-1] + b',"usage_event":' + usage_json + b"}"


def plain(amount: Decimal) -> str:
    """format(amount, "f"), the way Money is written (never an exponent), at an eighth of its
    cost: str() gives the same text unless it would use an exponent (below 1e-6, or a positive
    exponent), and only then is format() needed."""
    text = str(amount)
    return format(amount, "f") if "E" in text else text
