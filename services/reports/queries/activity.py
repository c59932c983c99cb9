"""The daily activity queries (/user, /team and /tag/daily/activity): one page of a rollup's
rows with the totals of every matching row, and the keys' names for the page."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from services.reports.params import DateRange
from services.reports.queries.base import Queries, Rollup

_ACTIVITY_COLUMNS = """r.date, r.{entity} AS entity, r.api_key, r.model, r.model_group, r.custom_llm_provider, r.endpoint,
       r.prompt_tokens, r.completion_tokens, r.cache_read_input_tokens, r.cache_creation_input_tokens,
       r.spend, r.api_requests, r.successful_requests, r.failed_requests"""

_SUMS = """COALESCE(SUM(r.spend), 0) AS spend, COALESCE(SUM(r.prompt_tokens), 0) AS prompt_tokens,
       COALESCE(SUM(r.completion_tokens), 0) AS completion_tokens,
       COALESCE(SUM(r.cache_read_input_tokens), 0) AS cache_read_input_tokens,
       COALESCE(SUM(r.cache_creation_input_tokens), 0) AS cache_creation_input_tokens,
       COALESCE(SUM(r.api_requests), 0) AS api_requests, COALESCE(SUM(r.successful_requests), 0) AS successful_requests,
       COALESCE(SUM(r.failed_requests), 0) AS failed_requests"""


class ActivityQueries(Queries):
    async def activity(self, rollup: Rollup, days: DateRange, *, entities: list[str], exclude: list[str],
                       model: str | None, api_key: str | None, page: int, page_size: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        where = [sql.SQL("r.date >= %(start)s AND r.date <= %(end)s")]
        ent = sql.Identifier(rollup.entity)
        if entities:
            where.append(sql.SQL("r.{} = ANY(%(entities)s)").format(ent))
        if exclude:
            where.append(sql.SQL("NOT (r.{} = ANY(%(exclude)s))").format(ent))
        if model is not None:
            where.append(sql.SQL("r.model = %(model)s"))
        if api_key is not None:
            where.append(sql.SQL("r.api_key = %(api_key)s"))
        params = {"start": days.start_text, "end": days.end_text, "entities": entities, "exclude": exclude, "model": model,
                  "api_key": api_key, "limit": page_size, "offset": (page - 1) * page_size}
        w = sql.SQL(" AND ").join(where)
        table = sql.Identifier(rollup.table)
        rows = await self._rows(
            sql.SQL("SELECT " + _ACTIVITY_COLUMNS + """ FROM {t} r WHERE {w}
                    ORDER BY r.date, r.{e}, r.api_key, r.model, r.custom_llm_provider, r.endpoint
                    LIMIT %(limit)s OFFSET %(offset)s""").format(t=table, w=w, e=ent, entity=ent),
            params,
        )
        totals = await self._rows(sql.SQL("SELECT COUNT(*) AS row_count, " + _SUMS + " FROM {t} r WHERE {w}").format(t=table, w=w), params)
        return rows, totals[0]

    async def key_metadata(self, hashes: list[str]) -> dict[str, dict[str, Any]]:
        if not hashes:
            return {}
        rows = await self._rows(
            'SELECT token, key_alias, team_id FROM "LiteLLM_VerificationToken" WHERE token = ANY(%s)', (hashes,))
        return {r["token"]: {"key_alias": r["key_alias"], "team_id": r["team_id"]} for r in rows}
