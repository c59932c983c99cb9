"""The Usage page's queries: measures grouped by day and dimension under its filters (from one
daily rollup, or from the spend logs when the filters span two entity dimensions: usage.py
decides), key filters resolved from alias or hash prefix, display names, and the budgets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import sql

from services.reports.params import DateRange
from services.reports.queries.base import API_KEY, END_USER, TAG, TEAM, Queries
from services.reports.usage import Filters, Source

_ROLLUPS = {None: API_KEY, "team": TEAM, "customer": END_USER, "tag": TAG}
_ROLLUP_MEASURES = ("spend, api_requests, successful_requests, failed_requests, prompt_tokens, completion_tokens,"
                    " cache_read_input_tokens")
_SUMS = """SUM(s.spend) AS spend, SUM(s.api_requests)::bigint AS api_requests,
           SUM(s.successful_requests)::bigint AS successful_requests, SUM(s.failed_requests)::bigint AS failed_requests,
           SUM(s.prompt_tokens)::bigint AS prompt_tokens, SUM(s.completion_tokens)::bigint AS completion_tokens,
           SUM(s.cache_read_input_tokens)::bigint AS cache_read_input_tokens"""
_COLUMN = {"key": "api_key", "model": "model", "team": "team", "customer": "customer", "tag": "tag", "date": "date"}
# A log's tags as rows; a request_tags value that is not a list has none.
_TAGS = """CROSS JOIN LATERAL jsonb_array_elements_text(
               CASE WHEN jsonb_typeof(l.request_tags) = 'array' THEN l.request_tags ELSE '[]'::jsonb END) AS t(tag)"""


def _rollup_source(entity: str | None) -> sql.Composable:
    rollup = _ROLLUPS[entity]
    entity_column = sql.SQL(", {} AS {}").format(sql.Identifier(rollup.entity), sql.Identifier(entity)) if entity else sql.SQL("")
    return sql.SQL("SELECT date, api_key, model{entity}, " + _ROLLUP_MEASURES +
                   " FROM {table} WHERE date >= %(start)s AND date <= %(end)s").format(
        entity=entity_column, table=sql.Identifier(rollup.table))


def _logs_source(filters: Filters, group: Sequence[str]) -> sql.Composable:
    """The range's logs in the rollups' shape, the filters applied to the log's own columns (a
    filter value is never '', so `end_user = x` means the same as its COALESCE and lets the
    indexes on api_key and end_user serve)."""
    tags_as_rows = "tag" in group
    where = ['l."startTime" >= %(start_at)s', 'l."startTime" < %(end_before)s']
    for value, condition in ((filters.keys, "l.api_key = ANY(%(keys)s)"), (filters.model, "l.model = %(model)s"),
                             (filters.team, "l.team_id = %(team)s"), (filters.customer, "l.end_user = %(customer)s"),
                             (filters.tag, "t.tag = %(tag)s" if tags_as_rows else "l.request_tags ? %(tag)s")):
        if value is not None:
            where.append(condition)
    return sql.SQL(f"""SELECT to_char(l."startTime" AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS date, l.api_key, l.model,
                  COALESCE(l.team_id, '') AS team, COALESCE(l.end_user, '') AS customer,
                  {"t.tag" if tags_as_rows else "NULL::text"} AS tag, l.spend, 1 AS api_requests,
                  (l.status = 'success')::int AS successful_requests, (l.status <> 'success')::int AS failed_requests,
                  l.prompt_tokens, l.completion_tokens, l.cache_read_input_tokens
           FROM "LiteLLM_SpendLogs" l {_TAGS if tags_as_rows else ""}
           WHERE {" AND ".join(where)}""")


def _conditions(filters: Filters, source: Source) -> list[str]:
    """The filters on a rollup source (the logs source applies its own)."""
    where = ["TRUE"]
    if source.kind == "logs":
        return where
    if filters.keys is not None:
        where.append("s.api_key = ANY(%(keys)s)")
    if filters.model is not None:
        where.append("s.model = %(model)s")
    if source.entity is not None and filters.entity(source.entity) is not None:
        where.append(f"s.{source.entity} = %({source.entity})s")
    return where


class UsageQueries(Queries):
    async def grouped(self, days: DateRange, filters: Filters, source: Source, group: Sequence[str]) -> list[dict[str, Any]]:
        """The measures summed per `group` (columns: date, key, model, team, customer, tag) within
        the range and filters, from `source`. Rows name their group columns as `group` does."""
        inner = _logs_source(filters, group) if source.kind == "logs" else _rollup_source(source.entity)
        columns = ", ".join(f"s.{_COLUMN[g]} AS \"{g}\"" for g in group)
        query = sql.SQL("SELECT {columns}{comma}" + _SUMS + " FROM ({inner}) s WHERE {where}{group_by}").format(
            columns=sql.SQL(columns), comma=sql.SQL(", " if group else ""), inner=inner,
            where=sql.SQL(" AND ".join(_conditions(filters, source))),
            group_by=sql.SQL(" GROUP BY " + ", ".join(f"s.{_COLUMN[g]}" for g in group) if group else ""))
        rows = await self._rows(query, {
            "start": days.start_text, "end": days.end_text, "start_at": days.start_at, "end_before": days.end_before,
            "keys": list(filters.keys or ()), "model": filters.model, "team": filters.team, "customer": filters.customer,
            "tag": filters.tag,
        })
        return [r for r in rows if r["api_requests"]] if group else rows

    async def keys_matching(self, text: str) -> list[str]:
        """Key hashes whose alias is `text` or whose hash starts with it (at most 100)."""
        rows = await self._rows(
            """SELECT token FROM "LiteLLM_VerificationToken"
               WHERE key_alias = %(text)s OR (length(%(text)s) >= 6 AND starts_with(token, %(text)s))
               ORDER BY token LIMIT 100""",
            {"text": text},
        )
        return [r["token"] for r in rows]

    async def key_labels(self, hashes: Sequence[str]) -> dict[str, str]:
        rows = await self._rows(
            'SELECT token, COALESCE(key_alias, key_name) AS label FROM "LiteLLM_VerificationToken" WHERE token = ANY(%s)',
            (list(hashes),))
        return {r["token"]: r["label"] for r in rows if r["label"]}

    async def team_labels(self, team_ids: Sequence[str]) -> dict[str, str]:
        rows = await self._rows('SELECT team_id, team_alias FROM "LiteLLM_TeamTable" WHERE team_id = ANY(%s)', (list(team_ids),))
        return {r["team_id"]: r["team_alias"] for r in rows if r["team_alias"]}

    async def budgets(self) -> list[dict[str, Any]]:
        """Every key, team, user and customer with a max_budget, with its spend and window, and its
        latest spend alert (docs/alerts.md)."""
        return await self._rows(
            """SELECT b.*, a.event AS last_alert_event, a.decided_at AS last_alert_at FROM (
               SELECT 'key' AS kind, token AS id, COALESCE(key_alias, key_name) AS name, team_id, spend, max_budget,
                      soft_budget, budget_duration, budget_reset_at
               FROM "LiteLLM_VerificationToken" WHERE max_budget IS NOT NULL
               UNION ALL
               SELECT 'team', team_id, team_alias, team_id, spend, max_budget, soft_budget, budget_duration, budget_reset_at
               FROM "LiteLLM_TeamTable" WHERE max_budget IS NOT NULL
               UNION ALL
               SELECT 'user', user_id, user_alias, team_id, spend, max_budget, soft_budget, budget_duration, budget_reset_at
               FROM "LiteLLM_UserTable" WHERE max_budget IS NOT NULL
               UNION ALL
               SELECT 'customer', user_id, alias, NULL, spend, max_budget, NULL, budget_duration, budget_reset_at
               FROM "LiteLLM_EndUserTable" WHERE max_budget IS NOT NULL
               ) b LEFT JOIN LATERAL (
                   SELECT d.event, d.decided_at FROM tally_alerts.deliveries d
                   WHERE d.entity_type = b.kind AND d.entity_id = b.id ORDER BY d.decided_at DESC, d.id DESC LIMIT 1
               ) a ON TRUE"""
        )
