"""The Usage page's own reads (Tally additions, same permissions as the /global/spend views):
/global/spend/usage (daily measures, stacked spend and top tables under the page's filters) and
/global/spend/budgets (every budget holder, closest to its budget first)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from services.reports import params, usage
from services.reports.auth import require_spend_reader
from services.reports.budgets import BudgetFilters, budget_rows
from services.reports.handlers.global_spend import cached_answer
from services.reports.jsonout import json_response
from services.reports.state import SETTINGS, caller, store
from services.reports.store import ReportsStore
from shared.errors import BadRequest

LAST_30_DAYS = 30
_TOP = {"keys": "key", "teams": "team", "customers": "customer", "models": "model", "tags": "tag"}


def _text(query: Mapping[str, str], name: str) -> str | None:
    value = (query.get(name) or "").strip()
    if len(value) > 256:
        raise BadRequest(f"{name} is longer than 256 characters", param=name)
    return value or None


async def parse_filters(request: web.Request) -> usage.Filters:
    """team, key (alias, hash prefix of at least 6 characters, or an sk- key), model, customer, tag."""
    q = request.query
    key = _text(q, "key")
    keys: tuple[str, ...] | None = None
    if key is not None:
        hashed = params.key_hash(key, request.app[SETTINGS].master_key)
        keys = (hashed,) if hashed != key else tuple(await store(request).keys_matching(key))
    return usage.Filters(keys=keys, model=_text(q, "model"), team=_text(q, "team"), customer=_text(q, "customer"),
                         tag=_text(q, "tag"))


async def _grouped(reports: ReportsStore, days: params.DateRange, filters: usage.Filters,
                   group: tuple[str, ...]) -> list[dict[str, Any]]:
    """Measures per `group`, with the unnamed team or customer remainder where the rollup lacks it."""
    source = usage.source_for(filters, group)
    named = await reports.grouped(days, filters, source, group)
    entity = usage.needs_remainder(filters, group)
    if entity is None:
        return named
    others = tuple(g for g in group if g != entity)
    every_key = await reports.grouped(days, filters, usage.Source("rollup"), others)
    return usage.add_remainder(named, every_key, entity, others)


async def usage_figures(reports: ReportsStore, days: params.DateRange, filters: usage.Filters, stack_by: str) -> dict[str, Any]:
    per_day, stacked, *tops = await asyncio.gather(
        _grouped(reports, days, filters, ("date",)),
        _grouped(reports, days, filters, ("date", stack_by)),
        *(_grouped(reports, days, filters, (dimension,)) for dimension in _TOP.values()),
    )
    top = dict(zip(_TOP, tops))
    key_labels, team_labels = await asyncio.gather(
        reports.key_labels([r["key"] for r in top["keys"]] + [r["key"] for r in stacked if stack_by == "key"]),
        reports.team_labels([r["team"] for r in top["teams"]] + [r["team"] for r in stacked if stack_by == "team"]))
    labels = {"key": key_labels, "team": team_labels}
    series = usage.stacks(days, stacked, stack_by)
    for s in series:
        s["label"] = labels.get(stack_by, {}).get(s["name"]) or s["name"]
    return {
        "start_date": days.start_text, "end_date": days.end_text, "stack_by": stack_by,
        "totals": usage.totals(per_day), "daily": usage.daily(days, per_day), "stacks": series,
        "top": {name: usage.top(rows, _TOP[name], labels.get(_TOP[name])) for name, rows in top.items()},
    }


async def global_spend_usage(request: web.Request) -> web.Response:
    """Tally: the Usage page's figures for a range (last 30 days unless given) and filters."""
    require_spend_reader(await caller(request), request.path)
    days = params.date_range(request.query, required=False, default_days=LAST_30_DAYS)
    assert days is not None
    filters = await parse_filters(request)
    stack_by = usage.parse_dimension("stack_by", request.query.get("stack_by"), "model")
    return await cached_answer(request, (filters, stack_by), days,
                               lambda: usage_figures(store(request), days, filters, stack_by), team_names=True, key_names=True)


async def global_spend_budgets(request: web.Request) -> web.Response:
    """Tally: keys, teams, users and customers with a max_budget, most used first; the page's team,
    key and customer filters narrow the list."""
    require_spend_reader(await caller(request), request.path)
    filters = await parse_filters(request)
    rows = await store(request).budgets()
    return json_response(budget_rows(rows, BudgetFilters(team=filters.team, keys=filters.keys, customer=filters.customer)))
