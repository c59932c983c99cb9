"""The /global/spend/* views used by dashboards and the Usage page, and the master-key reset."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from services.reports import params, shaping
from services.reports.auth import require_master, require_spend_reader
from services.reports.handlers.body import json_body
from services.reports.jsonout import dumps, json_response, raw_json_response
from services.reports.state import PRODUCER, PRODUCER_READY, REPORTS, SETTINGS, caller, store
from shared.errors import BadRequest, TallyError
from shared.events import SpendReset, encode
from shared.topics import ENTITIES

LAST_30_DAYS = 30
RESET_ANSWER = {"message": "Spend for all API Keys and Teams reset successfully", "status": "success"}


async def _reader(request: web.Request) -> None:
    require_spend_reader(await caller(request), request.path)


def _optional_range(request: web.Request) -> params.DateRange:
    days = params.date_range(request.query, required=False, default_days=LAST_30_DAYS)
    assert days is not None
    return days


async def cached_answer(request: web.Request, key: tuple[Any, ...], days: params.DateRange,
                  compute: Callable[[], Awaitable[Any]], *, team_names: bool = False, key_names: bool = False) -> web.Response:
    """The answer from the rollups, reused while no day of `days` has changed (see reporting.py)."""
    async def body(_: Any) -> bytes:
        return dumps(await compute())

    key = (request.path, *key, days)
    return raw_json_response(await request.app[REPORTS].answer(key, days, body, team_names=team_names, key_names=key_names))


async def global_spend_logs(request: web.Request) -> web.Response:
    """Spend per day (last 30 days unless dates are given), for one key when api_key= is set."""
    await _reader(request)
    api_key = params.key_hash(request.query.get("api_key"), request.app[SETTINGS].master_key)
    days = _optional_range(request)

    async def compute() -> list[dict[str, Any]]:
        rows = await store(request).spend_per_day(days, api_key)
        return [{"date": r["date"], "spend": r["spend"], **({"api_key": api_key} if api_key else {})} for r in rows]

    return await cached_answer(request, (api_key,), days, compute)


async def global_spend(request: web.Request) -> web.Response:
    await _reader(request)
    days = _optional_range(request)

    async def compute() -> dict[str, Any]:
        return {"spend": await store(request).total_spend(days), "max_budget": None}

    return await cached_answer(request, (), days, compute)


async def global_spend_keys(request: web.Request) -> web.Response:
    await _reader(request)
    limit = params.parse_int("limit", request.query.get("limit"), default=None)
    days = _optional_range(request)
    return await cached_answer(request, (limit,), days, lambda: store(request).top_keys(days, limit), key_names=True)


async def global_spend_models(request: web.Request) -> web.Response:
    await _reader(request)
    limit = params.parse_int("limit", request.query.get("limit"), default=10)
    days = _optional_range(request)
    return await cached_answer(request, (limit,), days, lambda: store(request).top_models(days, limit))


async def global_spend_teams(request: web.Request) -> web.Response:
    await _reader(request)
    days = _optional_range(request)

    async def compute() -> dict[str, Any]:
        return shaping.teams_daily(await store(request).team_spend_per_day(days))

    return await cached_answer(request, (), days, compute, team_names=True)


async def global_spend_provider(request: web.Request) -> web.Response:
    await _reader(request)
    days = params.date_range(request.query)
    assert days is not None
    return await cached_answer(request, (), days, lambda: store(request).spend_per_provider(days))


async def global_spend_all_tag_names(request: web.Request) -> web.Response:
    await _reader(request)
    return json_response({"tag_names": await store(request).tag_names()})


async def global_spend_tags(request: web.Request) -> web.Response:
    await _reader(request)
    days = params.date_range(request.query)
    tags = params.comma_list(request.query.get("tags"))
    if "all-tags" in tags:
        tags = []
    assert days is not None

    async def compute() -> dict[str, Any]:
        return shaping.tag_spend(await store(request).tag_spend(days, tags or None))

    return await cached_answer(request, tuple(tags), days, compute)


async def global_spend_end_users(request: web.Request) -> web.Response:
    """POST {startTime, endTime, api_key}: the top 100 customers by spend (last 30 days by default)."""
    await _reader(request)
    body = await json_body(request)
    start = params.parse_datetime_or_date("startTime", body.get("startTime"))
    end = params.parse_datetime_or_date("endTime", body.get("endTime"))
    default = _optional_range(request)
    days = params.DateRange(start or default.start, end or default.end)
    if days.end < days.start:
        raise BadRequest(f"endTime {days.end} is before startTime {days.start}", param="endTime")
    api_key = body.get("api_key")
    if api_key is not None and not isinstance(api_key, str):
        raise BadRequest("api_key must be a string", param="api_key")
    key_hash = params.key_hash(api_key, request.app[SETTINGS].master_key)
    return await cached_answer(request, (key_hash,), days, lambda: store(request).end_users(days, key_hash, 100))


class ResetNotPublished(TallyError):
    status = 503


async def global_spend_reset(request: web.Request) -> web.Response:
    """Master key only: one SpendReset on the entities topic; the ledger zeroes key and team spend
    as of its time and keeps every log."""
    require_master(await caller(request), request.path)
    settings = request.app[SETTINGS]
    event = SpendReset()
    try:
        await asyncio.wait_for(request.app[PRODUCER_READY].wait(), timeout=5)
        await request.app[PRODUCER].send_and_wait(settings.topic(ENTITIES), encode(event), key=b"spend_reset")
    except Exception as exc:  # noqa: BLE001 - any producer failure is the same answer: not reset
        raise ResetNotPublished(f"the spend reset could not be recorded (Kafka: {type(exc).__name__}); nothing was reset") from exc
    return json_response(RESET_ANSWER)
