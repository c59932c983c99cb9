"""GET /global/spend/report: spend per day per team or customer (per key+model), or per key
(per model), in exactly the seed's shapes."""

from __future__ import annotations

from aiohttp import web

from services.reports import params
from services.reports.auth import require_spend_reader
from services.reports.jsonout import raw_json_response
from services.reports.state import REPORTS, SETTINGS, caller, store


async def global_spend_report(request: web.Request) -> web.Response:
    require_spend_reader(await caller(request), request.path)
    q = request.query
    days = params.date_range(q)
    assert days is not None
    group_by = params.parse_group_by(q.get("group_by"))
    api_key = params.key_hash(q.get("api_key"), request.app[SETTINGS].master_key)
    internal_user_id = q.get("internal_user_id") or None
    team_id, customer_id = q.get("team_id") or None, q.get("customer_id") or None
    reports = request.app[REPORTS]
    if api_key is not None:
        return raw_json_response(await reports.by_key(days, api_key=api_key))
    if internal_user_id is not None:
        return raw_json_response(await reports.by_key(days, user_id=internal_user_id))
    if team_id is not None and customer_id is not None:
        return raw_json_response(await store(request).team_customer_report(days, team_id, customer_id))
    if group_by == "api_key":
        return raw_json_response(await reports.by_key(days))
    if group_by == "customer":
        return raw_json_response(await reports.grouped("customer", days, customer_id))
    return raw_json_response(await reports.grouped("team", days, team_id))
