"""The reports' SQL: every query parameterised, identifiers only from fixed tables below.
Grouped reports come from the daily rollups; only per-request detail reads the spend logs.
Sums are NUMERIC in Postgres and arrive as Decimal; the big report bodies are built as JSON by
Postgres itself (numeric → JSON text is exact) so tens of thousands of rows never become Python
objects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from services.reports.params import DateRange
from shared.errors import BadRequest, TallyError


class StoreUnavailable(TallyError):
    status = 503


@dataclass(frozen=True)
class Rollup:
    table: str
    entity: str  # the entity column


USER = Rollup("LiteLLM_DailyUserSpend", "user_id")
TEAM = Rollup("LiteLLM_DailyTeamSpend", "team_id")
TAG = Rollup("LiteLLM_DailyTagSpend", "tag")
END_USER = Rollup("LiteLLM_DailyEndUserSpend", "end_user_id")
API_KEY = Rollup("LiteLLM_DailyApiKeySpend", "api_key_id")


# The ledger rolls a log into the user, team and end-user tables only when it names one (as
# LiteLLM does), but into the api-key table always. So the spend with no team (or customer, or
# user) is, per day, key and model, the api-key rollup minus the named rollup: exact NUMERIC
# arithmetic, with no scan of the logs. {unassigned} switches it off when one entity is asked for.
_NAMED_AND_UNASSIGNED = """
named AS (
    SELECT r.date, r.{entity} AS entity, r.api_key, r.model, SUM(r.spend) AS spend,
           SUM(r.prompt_tokens) AS prompt_tokens, SUM(r.completion_tokens) AS completion_tokens,
           SUM(r.api_requests) AS api_requests
    FROM {table} r
    WHERE r.date >= %(start)s AND r.date <= %(end)s {filter} {day_filter}
    GROUP BY r.date, r.{entity}, r.api_key, r.model
), all_keys AS (
    SELECT a.date, a.api_key, a.model, SUM(a.spend) AS spend, SUM(a.prompt_tokens) AS prompt_tokens,
           SUM(a.completion_tokens) AS completion_tokens, SUM(a.api_requests) AS api_requests
    FROM "LiteLLM_DailyApiKeySpend" a
    WHERE {unassigned} AND a.date >= %(start)s AND a.date <= %(end)s {key_filter} {day_filter_a}
    GROUP BY a.date, a.api_key, a.model
), named_per_key AS (
    SELECT date, api_key, model, SUM(spend) AS spend, SUM(prompt_tokens) AS prompt_tokens,
           SUM(completion_tokens) AS completion_tokens, SUM(api_requests) AS api_requests
    FROM named GROUP BY date, api_key, model
), rows AS (
    SELECT date, entity, api_key, model, spend, prompt_tokens, completion_tokens, api_requests FROM named
    UNION ALL
    SELECT k.date, '' AS entity, k.api_key, k.model, k.spend - COALESCE(n.spend, 0),
           k.prompt_tokens - COALESCE(n.prompt_tokens, 0), k.completion_tokens - COALESCE(n.completion_tokens, 0),
           k.api_requests - COALESCE(n.api_requests, 0)
    FROM all_keys k LEFT JOIN named_per_key n USING (date, api_key, model)
    WHERE k.api_requests > COALESCE(n.api_requests, 0)
)"""

# group_by=team / customer: days → entities → (key, model) rows, as the seed shows.
_GROUPED_REPORT = "WITH " + _NAMED_AND_UNASSIGNED + """, per_entity AS (
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

_ACTIVITY_COLUMNS = """r.date, r.{entity} AS entity, r.api_key, r.model, r.model_group, r.custom_llm_provider, r.endpoint,
       r.prompt_tokens, r.completion_tokens, r.cache_read_input_tokens, r.cache_creation_input_tokens,
       r.spend, r.api_requests, r.successful_requests, r.failed_requests"""

_SUMS = """COALESCE(SUM(r.spend), 0) AS spend, COALESCE(SUM(r.prompt_tokens), 0) AS prompt_tokens,
       COALESCE(SUM(r.completion_tokens), 0) AS completion_tokens,
       COALESCE(SUM(r.cache_read_input_tokens), 0) AS cache_read_input_tokens,
       COALESCE(SUM(r.cache_creation_input_tokens), 0) AS cache_creation_input_tokens,
       COALESCE(SUM(r.api_requests), 0) AS api_requests, COALESCE(SUM(r.successful_requests), 0) AS successful_requests,
       COALESCE(SUM(r.failed_requests), 0) AS failed_requests"""

_LOG_COLUMNS = """request_id, call_type, api_key, spend, total_tokens, prompt_tokens, completion_tokens, "startTime", "endTime",
       "completionStartTime", request_duration_ms, model, model_id, model_group, custom_llm_provider, api_base, "user",
       metadata, cache_hit, cache_key, request_tags, team_id, organization_id, end_user, requester_ip_address, session_id,
       status, cache_read_input_tokens, cache_creation_input_tokens, reasoning_tokens, priced_model, unpriced,
       catalog_version"""


class ReportsStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def _rows(self, query: sql.Composable | str, params: dict[str, Any] | tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        try:
            async with self.pool.connection() as conn:
                async with conn.cursor(row_factory=dict_row) as cur:
                    await cur.execute(query, params)  # type: ignore[arg-type]
                    return await cur.fetchall()
        except psycopg.DataError as exc:
            raise BadRequest(f"a parameter is not acceptable to the database: {exc.diag.message_primary or type(exc).__name__}") from exc
        except (psycopg.OperationalError, TimeoutError) as exc:
            raise StoreUnavailable(f"the spend database is not reachable: {type(exc).__name__}") from exc

    async def _scalar(self, query: sql.Composable | str, params: dict[str, Any] | tuple[Any, ...] = ()) -> Any:
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(query, params)  # type: ignore[arg-type]
                row = await cur.fetchone()
                return row[0] if row else None
        except psycopg.DataError as exc:
            raise BadRequest(f"a parameter is not acceptable to the database: {exc.diag.message_primary or type(exc).__name__}") from exc
        except (psycopg.OperationalError, TimeoutError) as exc:
            raise StoreUnavailable(f"the spend database is not reachable: {type(exc).__name__}") from exc

    # -- auth -------------------------------------------------------------------------------
    async def key(self, token_hash: str) -> dict[str, Any] | None:
        rows = await self._rows(
            'SELECT token, key_alias, user_id, team_id, permissions, expires, blocked FROM "LiteLLM_VerificationToken" WHERE token = %s',
            (token_hash,),
        )
        return rows[0] if rows else None

    # -- /global/spend/report -----------------------------------------------------------------
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

    # -- global views over the api-key rollup ------------------------------------------------------
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

    # -- tags ----------------------------------------------------------------------------------
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

    # -- spend logs ------------------------------------------------------------------------------
    async def log_by_request_id(self, request_id: str, own_key: str | None) -> list[dict[str, Any]]:
        return await self._rows(
            f'SELECT {_LOG_COLUMNS} FROM "LiteLLM_SpendLogs" WHERE request_id = %(rid)s'
            + (" AND api_key = %(own)s" if own_key else ""),
            {"rid": request_id, "own": own_key},
        )

    async def logs(self, days: DateRange | None, *, api_key: str | None, user_id: str | None, limit: int) -> list[dict[str, Any]]:
        where = ["TRUE"]
        if days is not None:
            where.append('"startTime" >= %(start_at)s AND "startTime" < %(end_before)s')
        if api_key is not None:
            where.append("api_key = %(api_key)s")
        if user_id is not None:
            where.append('"user" = %(user_id)s')
        params: dict[str, Any] = {"api_key": api_key, "user_id": user_id, "limit": limit}
        if days is not None:
            params.update(start_at=days.start_at, end_before=days.end_before)
        return await self._rows(
            f'SELECT {_LOG_COLUMNS} FROM "LiteLLM_SpendLogs" WHERE {" AND ".join(where)}'
            ' ORDER BY "startTime" DESC, request_id DESC LIMIT %(limit)s',
            params,
        )

    async def user_spend_rows(self, days: DateRange, *, api_key: str | None, user_id: str | None) -> list[dict[str, Any]]:
        """Per day, key, user and model (user "" for spend without one): what /spend/logs summarises."""
        filter_ = sql.SQL("")
        if api_key is not None:
            filter_ = filter_ + sql.SQL(" AND r.api_key = %(api_key)s")
        if user_id is not None:
            filter_ = filter_ + sql.SQL(" AND r.user_id = %(user_id)s")
        rows = await self._rows(
            sql.SQL("WITH " + _NAMED_AND_UNASSIGNED + """
                    SELECT r.date, r.api_key, r.entity AS "user", r.model, r.spend FROM rows r ORDER BY 1""").format(
                table=sql.Identifier(USER.table), entity=sql.Identifier(USER.entity), filter=filter_,
                unassigned=sql.SQL("TRUE" if user_id is None else "FALSE"),
                key_filter=sql.SQL("AND a.api_key = %(api_key)s") if api_key else sql.SQL(""),
                day_filter=sql.SQL(""), day_filter_a=sql.SQL("")),
            {"start": days.start_text, "end": days.end_text, "api_key": api_key, "user_id": user_id},
        )
        for row in rows:
            row["date"] = date.fromisoformat(row["date"])
        return rows

    # -- tables ----------------------------------------------------------------------------------
    async def keys_by_spend(self) -> list[dict[str, Any]]:
        return await self._rows(
            """SELECT token, key_name, key_alias, spend, max_budget, soft_budget, budget_duration, budget_reset_at, expires,
                      models, user_id, team_id, permissions, metadata, tpm_limit, rpm_limit, max_parallel_requests, blocked,
                      created_at, updated_at
               FROM "LiteLLM_VerificationToken" ORDER BY spend DESC, token"""
        )

    async def users_by_spend(self, user_id: str | None) -> list[dict[str, Any]]:
        return await self._rows(
            """SELECT user_id, user_alias, team_id, teams, user_role, user_email, models, metadata, spend, max_budget,
                      soft_budget, budget_duration, budget_reset_at, tpm_limit, rpm_limit, max_parallel_requests,
                      created_at, updated_at
               FROM "LiteLLM_UserTable" WHERE (%(uid)s::text IS NULL OR user_id = %(uid)s) ORDER BY spend DESC, user_id""",
            {"uid": user_id},
        )

    # -- daily activity ------------------------------------------------------------------------------
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
