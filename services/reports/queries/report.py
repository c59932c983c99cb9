"""/global/spend/report's queries: the per-day signatures its caches are keyed on and the
grouped report bodies, built as JSON by Postgres from the daily rollups."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from services.reports.params import DateRange
from services.reports.queries.base import API_KEY, END_USER, NAMED_AND_UNASSIGNED, TEAM, USER, Queries

# group_by=team / customer: days → entities → (key, model) rows, as the seed shows.
_GROUPED_REPORT = "WITH " + NAMED_AND_UNASSIGNED + """, per_entity AS (
    SELECT r.date, r.entity, SUM(r.spend) AS total_spend,
           json_agg(json_build_object('model', r.model, 'spend', r.spend,
                                      'total_tokens', r.prompt_tokens + r.completion_tokens, 'api_key', r.api_key)
                    ORDER BY r.spend DESC, r.api_key, r.model) AS metadata
    FROM rows r GROUP BY r.date, r.entity
), per_day AS (
    SELECT e.date,
           json_agg(json_build_object({name_field}, {name_expr}, 'total_spend', e.total_spend, 'metadata', e.metadata)
                    ORDER BY e.total_spend DESC, e.entity) AS entities
    FROM per_entity e {join}
    GROUP BY e.date
)
SELECT d.date, json_build_object('group_by_day', d.date || 'T00:00:00+00:00', {list_field}, d.entities)::text
FROM per_day d
"""

# team_id= and customer_id= together: only the logs hold both, so this one reads them.
_TEAM_CUSTOMER_REPORT = """
WITH km AS (
    SELECT (sl."startTime" AT TIME ZONE 'UTC')::date AS day, sl.team_id, sl.end_user, sl.model, sl.api_key,
           SUM(sl.spend) AS spend, SUM(sl.total_tokens) AS total_tokens
    FROM "LiteLLM_SpendLogs" sl
    WHERE sl."startTime" >= %(start_at)s AND sl."startTime" < %(end_before)s
      AND sl.team_id = %(team_id)s AND sl.end_user = %(customer_id)s
    GROUP BY 1, 2, 3, 4, 5
), per_entity AS (
    SELECT km.day, km.team_id, km.end_user, SUM(km.spend) AS total_spend,
           json_agg(json_build_object('model', km.model, 'spend', km.spend, 'total_tokens', km.total_tokens,
                                      'api_key', km.api_key) ORDER BY km.spend DESC, km.api_key, km.model) AS metadata
    FROM km GROUP BY 1, 2, 3
), per_day AS (
    SELECT e.day, json_agg(json_build_object('team_name', COALESCE(tt.team_alias, e.team_id), 'customer', e.end_user,
                                             'total_spend', e.total_spend, 'metadata', e.metadata)) AS teams_customers
    FROM per_entity e LEFT JOIN "LiteLLM_TeamTable" tt ON tt.team_id = e.team_id
    GROUP BY e.day
)
SELECT COALESCE(json_agg(json_build_object('group_by_day', to_char(d.day, 'YYYY-MM-DD') || 'T00:00:00+00:00',
                                           'teams_customers', d.teams_customers) ORDER BY d.day), '[]'::json)::text
FROM per_day d
"""


class ReportQueries(Queries):
    async def day_signatures(self, days: DateRange) -> dict[str, tuple[int, int]]:
        """Per day with spend: (rollup rows, requests) of the api-key rollup, which every log
        touches in the same transaction as the others, so a day whose signature is unchanged has
        unchanged rollups everywhere."""
        rows = await self._rows(
            """SELECT date, COUNT(*) AS n, SUM(api_requests) AS requests FROM "LiteLLM_DailyApiKeySpend"
               WHERE date >= %(start)s AND date <= %(end)s GROUP BY date""",
            {"start": days.start_text, "end": days.end_text},
        )
        return {r["date"]: (int(r["n"]), int(r["requests"])) for r in rows}

    async def team_names_signature(self) -> str:
        return await self._scalar(
            """SELECT COALESCE(md5(string_agg(team_id || '\x1f' || COALESCE(team_alias, ''), '\x1e' ORDER BY team_id)), '')
               FROM "LiteLLM_TeamTable" """)

    async def key_names_signature(self) -> str:
        return await self._scalar(
            """SELECT COALESCE(md5(string_agg(token || '\x1f' || COALESCE(key_alias, '') || '\x1f' || COALESCE(key_name, ''),
                                              '\x1e' ORDER BY token)), '')
               FROM "LiteLLM_VerificationToken" """)

    async def grouped_report_days(self, group_by: str, days: DateRange, dates: list[str], entity_id: str | None) -> dict[str, str]:
        """One JSON object per day (of `dates`, within `days`): {"group_by_day", "teams"|"customers"}."""
        rollup = TEAM if group_by == "team" else END_USER
        params: dict[str, Any] = {"start": days.start_text, "end": days.end_text, "entity_id": entity_id, "dates": dates}
        filter_ = sql.SQL(f"AND r.{rollup.entity} = %(entity_id)s") if entity_id is not None else sql.SQL("")
        if group_by == "team":
            name_expr = sql.SQL("CASE WHEN e.entity = '' THEN 'Unassigned Team' ELSE COALESCE(tt.team_alias, e.entity) END")
            join = sql.SQL('LEFT JOIN "LiteLLM_TeamTable" tt ON tt.team_id = e.entity')
            name_field, list_field = sql.Literal("team_name"), sql.Literal("teams")
        else:
            name_expr, join = sql.SQL("e.entity"), sql.SQL("")
            name_field, list_field = sql.Literal("customer"), sql.Literal("customers")
        query = sql.SQL(_GROUPED_REPORT).format(
            table=sql.Identifier(rollup.table), entity=sql.Identifier(rollup.entity), filter=filter_,
            unassigned=sql.SQL("TRUE" if entity_id is None else "FALSE"), key_filter=sql.SQL(""),
            day_filter=sql.SQL("AND r.date = ANY(%(dates)s)"), day_filter_a=sql.SQL("AND a.date = ANY(%(dates)s)"),
            name_field=name_field, name_expr=name_expr, join=join, list_field=list_field,
        )
        rows = await self._rows(query, params)
        return {r["date"]: r["json_build_object"] for r in rows}

    async def key_model_sums(self, days: DateRange, dates: list[str], *, api_key: str | None = None,
                             user_id: str | None = None) -> list[dict[str, Any]]:
        """Per key and model, cost and tokens summed over `dates` (days within `days`)."""
        if user_id is not None:
            table, filter_ = USER.table, sql.SQL("AND r.user_id = %(user_id)s")
        elif api_key is not None:
            table, filter_ = API_KEY.table, sql.SQL("AND r.api_key = %(api_key)s")
        else:
            table, filter_ = API_KEY.table, sql.SQL("")
        return await self._rows(
            sql.SQL("""SELECT r.api_key, r.model, SUM(r.spend) AS total_cost, SUM(r.prompt_tokens)::bigint AS total_input_tokens,
                              SUM(r.completion_tokens)::bigint AS total_output_tokens
                       FROM {t} r WHERE r.date >= %(start)s AND r.date <= %(end)s AND r.date = ANY(%(dates)s) {f}
                       GROUP BY r.api_key, r.model""").format(t=sql.Identifier(table), f=filter_),
            {"start": days.start_text, "end": days.end_text, "dates": dates, "api_key": api_key, "user_id": user_id},
        )

    async def team_customer_report(self, days: DateRange, team_id: str, customer_id: str) -> str:
        return await self._scalar(_TEAM_CUSTOMER_REPORT, {
            "start_at": days.start_at, "end_before": days.end_before, "team_id": team_id, "customer_id": customer_id,
        })
