"""POST /spend/calculate: the cost of a call before (model + messages) or after
(completion_response) it, priced by the same shared pricing code as the pricer."""

from __future__ import annotations

from aiohttp import web

from services.reports.calculation import usage_event
from services.reports.handlers.body import json_body
from services.reports.jsonout import json_response
from services.reports.state import CATALOG, CONFIG, caller
from shared.errors import BadRequest, TallyError


class PricingUnavailable(TallyError):
    status = 503


async def spend_calculate(request: web.Request) -> web.Response:
    await caller(request)  # any valid key
    body = await json_body(request)
    catalog = request.app[CATALOG]
    if catalog is None:
        raise PricingUnavailable("prices are not loaded in the reports service; see its start-up log")
    from shared.pricing import InconsistentUsage, price_usage_event

    event = usage_event(body, request.app[CONFIG])
    try:
        result = price_usage_event(catalog, event)
    except InconsistentUsage as exc:
        raise BadRequest(f"usage is inconsistent: {exc}") from exc
    return json_response({"cost": result.cost.total})
