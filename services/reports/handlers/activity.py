"""/user/daily/activity, /team/daily/activity, /tag/daily/activity: LiteLLM's daily activity
shape from the daily rollups. Spend readers see every entity; any other key only its own user
or team."""

from __future__ import annotations

from aiohttp import web

from services.reports import params, shaping
from services.reports.auth import Caller, require_spend_reader
from services.reports.jsonout import json_response
from services.reports.state import SETTINGS, caller, store
from services.reports.queries.base import TAG, TEAM, USER, Rollup
from shared.errors import Forbidden


def _own(who: Caller, requested: list[str], own_id: str | None, kind: str) -> list[str]:
    if who.sees_everything:
        return requested
    if own_id is None:
        raise Forbidden(f"This key belongs to no {kind}: it may not read {kind} activity", code="403")
    if any(item != own_id for item in requested):
        raise Forbidden(f"This key may read only its own {kind}'s activity", code="403")
    return [own_id]


async def _activity(request: web.Request, rollup: Rollup, entities: list[str], exclude: list[str]) -> web.Response:
    q = request.query
    days = params.date_range(q)
    assert days is not None
    page = params.parse_int("page", q.get("page"), default=1)
    page_size = params.parse_int("page_size", q.get("page_size"), default=50, maximum=params.MAX_PAGE_SIZE)
    assert page is not None and page_size is not None
    rows, totals = await store(request).activity(
        rollup, days, entities=entities, exclude=exclude, model=q.get("model") or None,
        api_key=params.key_hash(q.get("api_key"), request.app[SETTINGS].master_key), page=page, page_size=page_size,
    )
    key_meta = await store(request).key_metadata(sorted({r["api_key"] for r in rows}))
    return json_response(shaping.daily_activity(rows, totals=totals, key_metadata=key_meta, page=page, page_size=page_size,
                                                total_rows=int(totals["row_count"])))


async def user_daily_activity(request: web.Request) -> web.Response:
    who = await caller(request)
    requested = [request.query["user_id"]] if request.query.get("user_id") else []
    return await _activity(request, USER, _own(who, requested, who.user_id, "user"), [])


async def team_daily_activity(request: web.Request) -> web.Response:
    who = await caller(request)
    requested = params.comma_list(request.query.get("team_ids"))
    exclude = params.comma_list(request.query.get("exclude_team_ids"))
    return await _activity(request, TEAM, _own(who, requested, who.team_id, "team"), exclude)


async def tag_daily_activity(request: web.Request) -> web.Response:
    require_spend_reader(await caller(request), request.path)
    return await _activity(request, TAG, params.comma_list(request.query.get("tags")), [])
