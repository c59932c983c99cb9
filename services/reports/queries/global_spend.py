"""/global/spend/*'s queries: views over the api-key rollup (per day, key, model, provider,
team, customer) and the tag rollup."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from services.reports.params import DateRange
from services.reports.queries.base import API_KEY, TAG, Queries


class GlobalSpendQueries(Queries):
    async def spend_per_day(self, days: DateRange, api_key: str | None) -> list[dict[str, Any]]:
        return await self._rows(
            sql.SQL("""SELECT r.date, SUM(r.spend) AS spend FROM {t} r
                       WHERE r.date >= %(start)s AND r.date <= %(end)s {f} GROUP BY r.date ORDER BY r.date""").format(
                t=sql.Identifier(API_KEY.table), f=sql.SQL("AND r.api_key = %(api_key)s") if api_key else sql.SQL("")),
            {"start": days.start_text, "end": days.end_text, "api_key": api_key},
        )

    async def total_spend(self, days: DateRange) -> Any:
        return await self._scalar(
            sql.SQL("SELECT COALESCE(SUM(r.spend), 0) FROM {t} r WHERE r.date >= %(start)s AND r.date <= %(end)s").format(
                t=sql.Identifier(API_KEY.table)),
            {"start": days.start_text, "end": days.end_text},
        )

    async def top_keys(self, days: DateRange, limit: int | None) -> list[dict[str, Any]]:
        return await self._rows(
            sql.SQL("""WITH s AS (SELECT r.api_key, SUM(r.spend) AS total_spend FROM {t} r
                                  WHERE r.date >= %(start)s AND r.date <= %(end)s GROUP BY r.api_key)
                       SELECT s.api_key, s.total_spend, v.key_alias, v.key_name FROM s
                       LEFT JOIN "LiteLLM_VerificationToken" v ON v.token = s.api_key
                       ORDER BY s.total_spend DESC, s.api_key LIMIT %(limit)s""").format(t=sql.Identifier(API_KEY.table)),
            {"start": days.start_text, "end": days.end_text, "limit": limit},
        )

    async def top_models(self, days: DateRange, limit: int | None) -> list[dict[str, Any]]:
        return await self._rows(
            sql.SQL("""SELECT r.model, SUM(r.spend) AS total_spend, SUM(r.prompt_tokens + r.completion_tokens) AS total_tokens
                       FROM {t} r WHERE r.date >= %(start)s AND r.date <= %(end)s
                       GROUP BY r.model ORDER BY total_spend DESC, r.model LIMIT %(limit)s""").format(t=sql.Identifier(API_KEY.table)),
            {"start": days.start_text, "end": days.end_text, "limit": limit},
        )

    async def spend_per_provider(self, days: DateRange) -> list[dict[str, Any]]:
        return await self._rows(
            sql.SQL("""SELECT COALESCE(NULLIF(r.custom_llm_provider, ''), 'Unknown') AS provider, SUM(r.spend) AS spend
                       FROM {t} r WHERE r.date >= %(start)s AND r.date <= %(end)s
                       GROUP BY 1 ORDER BY spend DESC, provider""").format(t=sql.Identifier(API_KEY.table)),
            {"start": days.start_text, "end": days.end_text},
        )

    async def team_spend_per_day(self, days: DateRange) -> list[dict[str, Any]]:
        """Spend per day per team; the spend with no team is the day's api-key total minus the teams'."""
        return await self._rows(
            """WITH named AS (
                   SELECT r.date, r.team_id, SUM(r.spend) AS spend FROM "LiteLLM_DailyTeamSpend" r
                   WHERE r.date >= %(start)s AND r.date <= %(end)s GROUP BY r.date, r.team_id
               ), unassigned AS (
                   SELECT a.date, NULL::text AS team_id, SUM(a.spend) - COALESCE((SELECT SUM(n.spend) FROM named n WHERE n.date = a.date), 0) AS spend,
                          SUM(a.api_requests) - COALESCE((SELECT SUM(t.api_requests) FROM "LiteLLM_DailyTeamSpend" t WHERE t.date = a.date), 0) AS requests
                   FROM "LiteLLM_DailyApiKeySpend" a WHERE a.date >= %(start)s AND a.date <= %(end)s GROUP BY a.date
               )
               SELECT x.date, CASE WHEN x.team_id IS NULL THEN NULL ELSE COALESCE(tt.team_alias, x.team_id) END AS team_alias, x.spend
               FROM (SELECT date, team_id, spend FROM named
                     UNION ALL SELECT date, team_id, spend FROM unassigned WHERE requests > 0) x
               LEFT JOIN "LiteLLM_TeamTable" tt ON tt.team_id = x.team_id
               ORDER BY x.date""",
            {"start": days.start_text, "end": days.end_text},
        )

    async def end_users(self, days: DateRange, api_key: str | None, limit: int) -> list[dict[str, Any]]:
        """Customers by spend; "" holds the spend with no customer (api-key total minus the named)."""
        key_filter = "AND r.api_key = %(api_key)s" if api_key else ""
        return await self._rows(
            f"""WITH named AS (
                    SELECT r.end_user_id AS end_user, SUM(r.api_requests) AS total_count, SUM(r.spend) AS total_spend
                    FROM "LiteLLM_DailyEndUserSpend" r WHERE r.date >= %(start)s AND r.date <= %(end)s {key_filter}
                    GROUP BY r.end_user_id
                ), everyone AS (
                    SELECT SUM(r.api_requests) AS total_count, SUM(r.spend) AS total_spend
                    FROM "LiteLLM_DailyApiKeySpend" r WHERE r.date >= %(start)s AND r.date <= %(end)s {key_filter}
                ), unassigned AS (
                    SELECT '' AS end_user, e.total_count - COALESCE((SELECT SUM(total_count) FROM named), 0) AS total_count,
                           e.total_spend - COALESCE((SELECT SUM(total_spend) FROM named), 0) AS total_spend
                    FROM everyone e
                )
                SELECT * FROM (SELECT * FROM named UNION ALL SELECT * FROM unassigned WHERE total_count > 0) x
                ORDER BY total_spend DESC, end_user LIMIT %(limit)s""",
            {"start": days.start_text, "end": days.end_text, "api_key": api_key, "limit": limit},
        )

    async def tag_spend(self, days: DateRange | None, tags: list[str] | None) -> list[dict[str, Any]]:
        where = [sql.SQL("TRUE")]
        params: dict[str, Any] = {"tags": tags}
        if days is not None:
            where.append(sql.SQL("r.date >= %(start)s AND r.date <= %(end)s"))
            params.update(start=days.start_text, end=days.end_text)
        if tags:
            where.append(sql.SQL("r.tag = ANY(%(tags)s)"))
        return await self._rows(
            sql.SQL("""SELECT r.tag, SUM(r.spend) AS spend, SUM(r.api_requests) AS log_count FROM {t} r
                       WHERE {w} GROUP BY r.tag ORDER BY spend DESC, r.tag""").format(
                t=sql.Identifier(TAG.table), w=sql.SQL(" AND ").join(where)),
            params,
        )

    async def tag_names(self) -> list[str]:
        rows = await self._rows(sql.SQL("SELECT DISTINCT tag FROM {t} WHERE tag <> '' ORDER BY tag").format(t=sql.Identifier(TAG.table)))
        return [r["tag"] for r in rows]
