"""/spend/logs, /spend/tags, /spend/keys, /spend/users."""

from __future__ import annotations

from aiohttp import web

from services.reports import params, shaping
from services.reports.auth import require_spend_reader
from services.reports.jsonout import json_response
from services.reports.state import SETTINGS, caller, store


async def spend_logs(request: web.Request) -> web.Response:
    """One request's row, raw rows, or (with both dates, summarize=true) spend per day.
    A key without spend permissions sees only rows of its own key."""
    who = await caller(request)
    q = request.query
    settings = request.app[SETTINGS]
    own = None if who.sees_everything else who.key_hash
    api_key = params.key_hash(q.get("api_key"), settings.master_key)
    if own is not None:
        if api_key is not None and api_key != own:
            return json_response([])  # another key's rows: none of this caller's business
        api_key = own
    user_id = q.get("user_id") or None
    request_id = q.get("request_id") or None
    summarize = params.parse_bool("summarize", q.get("summarize"), default=True)
    limit = params.parse_int("limit", q.get("limit"), default=settings.max_log_rows, maximum=settings.max_log_rows)
    assert limit is not None
    days = params.date_range(q, required=False)
    reports = store(request)
    if request_id is not None:
        return json_response(await reports.log_by_request_id(request_id, api_key))
    if days is not None and summarize:
        rows = await reports.user_spend_rows(days, api_key=api_key, user_id=user_id)
        today = params.date_range({}, required=False, default_days=1)
        assert today is not None
        return json_response(shaping.spend_logs_by_day(rows, fill_until=min(days.end, today.end)))
    return json_response(await reports.logs(days, api_key=api_key, user_id=user_id, limit=limit))


async def spend_tags(request: web.Request) -> web.Response:
    require_spend_reader(await caller(request), request.path)
    days = params.date_range(request.query, required=False)
    rows = await store(request).tag_spend(days, None)
    return json_response([
        {"individual_request_tag": r["tag"], "log_count": r["log_count"], "total_spend": r["spend"]} for r in rows
    ])


async def spend_keys(request: web.Request) -> web.Response:
    require_spend_reader(await caller(request), request.path)
    return json_response(await store(request).keys_by_spend())


async def spend_users(request: web.Request) -> web.Response:
    require_spend_reader(await caller(request), request.path)
    return json_response(await store(request).users_by_spend(request.query.get("user_id") or None))
