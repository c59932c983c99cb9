"""/spend/logs, /spend/tags, /spend/keys, /spend/users."""

from __future__ import annotations

from datetime import time, timedelta
from typing import Any

from aiohttp import web

from services.reports import params, shaping, usage
from services.reports.auth import require_spend_reader
from services.reports.handlers.usage import parse_filters
from services.reports.queries.spend import LOG_SORTS
from services.reports.jsonout import json_response
from services.reports.state import SETTINGS, caller, store
from services.reports.store import ReportsStore


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
    # Raw rows come a page of `limit` at a time (LiteLLM's list shape): never a silent cap, a page
    # with more behind it says where the next one is in a `Link: <...>; rel="next"` header.
    page = params.parse_int("page", q.get("page"), default=1, maximum=params.MAX_PAGE)
    assert page is not None
    rows = await reports.logs(days, api_key=api_key, user_id=user_id, limit=limit + 1, offset=(page - 1) * limit)
    response = json_response(rows[:limit])
    if len(rows) > limit:
        response.headers["Link"] = f'<{request.rel_url.update_query(page=str(page + 1), limit=str(limit))}>; rel="next"'
    return response


async def spend_logs_ui(request: web.Request) -> web.Response:
    """LiteLLM's paged logs: {data, total, page, page_size, total_pages}, newest first unless
    sort_by/sort_order say otherwise (Tally). Filters as LiteLLM's (api_key, user_id, request_id,
    team_id, min_spend, max_spend, status_filter, model) plus Tally's end_user, tag and key (alias
    or hash prefix). A key without spend permissions sees only its own key's rows."""
    who = await caller(request)
    q = request.query
    settings = request.app[SETTINGS]
    start_at, end_before = params.parse_moment_range(q)
    page = params.parse_int("page", q.get("page"), default=1, maximum=params.MAX_PAGE)
    page_size = params.parse_int("page_size", q.get("page_size"), default=50, maximum=params.MAX_PAGE_SIZE)
    assert page is not None and page_size is not None
    api_keys: list[str] | None = None
    if q.get("api_key"):
        api_keys = [params.key_hash(q["api_key"], settings.master_key) or ""]
    if q.get("key"):
        matching = (await parse_filters(request)).keys or ()
        api_keys = [k for k in matching if api_keys is None or k in api_keys]
    if not who.sees_everything:
        api_keys = [k for k in (api_keys if api_keys is not None else [who.key_hash]) if k == who.key_hash]
    where = {
        "start_at": start_at, "end_before": end_before, "api_keys": api_keys,
        "user_id": q.get("user_id") or None, "request_id": q.get("request_id") or None, "team_id": q.get("team_id") or None,
        "end_user": q.get("end_user") or None, "model": q.get("model") or None, "tag": q.get("tag") or None,
        "min_spend": params.parse_decimal("min_spend", q.get("min_spend")),
        "max_spend": params.parse_decimal("max_spend", q.get("max_spend")),
        "status": params.parse_choice("status_filter", q.get("status_filter"), ("success", "failure"), None),
    }
    sort_by = params.parse_choice("sort_by", q.get("sort_by"), LOG_SORTS, "startTime")
    descending = params.parse_choice("sort_order", q.get("sort_order"), ("asc", "desc"), "desc") == "desc"
    assert sort_by is not None
    reports = store(request)
    total, rows = await reports.logs_page(where, sort_by=sort_by, descending=descending, offset=(page - 1) * page_size,
                                          limit=page_size, total=await count_from_rollups(reports, where))
    return json_response({"data": rows, "total": total, "page": page, "page_size": page_size,
                          "total_pages": (total + page_size - 1) // page_size})


async def count_from_rollups(reports: ReportsStore, where: dict[str, Any]) -> int | None:
    """How many logs match, from the daily rollups, when they can say it exactly: whole days, and
    only filters a rollup holds (key, model, team, customer, status). Counting a month of logs
    instead would read millions of index entries on every page. (Tags are left to the logs: the
    tag rollup counts a log once per tag it lists.) None when the logs must be counted."""
    start_at, end_before = where["start_at"], where["end_before"]
    whole_days = start_at.time() == time(0) and end_before.time() == time(0)
    if not whole_days or any(where[n] is not None for n in ("user_id", "request_id", "tag", "min_spend", "max_spend")):
        return None
    filters = usage.Filters(keys=None if where["api_keys"] is None else tuple(where["api_keys"]), model=where["model"],
                            team=where["team_id"], customer=where["end_user"])
    source = usage.source_for(filters, ())
    if source.kind != "rollup":
        return None
    # Days behind the retention horizon keep their rollups but not their logs: count only kept days.
    horizon = await reports.retention_horizon()
    first = start_at.date() if horizon is None else max(start_at.date(), horizon)
    if first >= end_before.date():
        return 0
    days = params.DateRange(first, end_before.date() - timedelta(days=1))
    sums = (await reports.grouped(days, filters, source, ()))[0]
    measure = {"success": "successful_requests", "failure": "failed_requests"}.get(where["status"] or "", "api_requests")
    return int(sums[measure] or 0)


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
