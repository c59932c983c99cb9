"""What every query group of the reports' store stands on: the pool, the one place psycopg's
errors are translated into answers (a parameter Postgres refuses: 400; Postgres unreachable:
503), the daily rollup tables, and the SQL that derives the spend no entity was named for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

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
NAMED_AND_UNASSIGNED = """
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


# How a statement is planned (`plan=`). "auto": psycopg prepares a statement after five runs on a
# connection and Postgres then picks custom or generic plans itself. "custom": never prepared,
# planned for its own values each run (a range of days prunes the daily partitions while planning).
# "generic": prepared and run with one generic plan from the first run on, for a statement no
# value prunes (it reads every monthly partition of tally_request_days): planning it afresh would
# cost more than running it. SET LOCAL ends with the statement's own transaction.
Plan = Literal["auto", "custom", "generic"]
GENERIC_PLAN = "SET LOCAL plan_cache_mode = force_generic_plan"


class Queries:
    """Runs parameterised statements on the pool; the query groups derive from it."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def _rows(self, query: sql.Composable | str, params: dict[str, Any] | tuple[Any, ...] = (), *,
                    plan: Plan = "auto") -> list[dict[str, Any]]:
        try:
            async with self.pool.connection() as conn:
                async with conn.cursor(row_factory=dict_row) as cur:
                    return await _fetch(cur, query, params, plan)
        except psycopg.DataError as exc:
            raise BadRequest(f"a parameter is not acceptable to the database: {exc.diag.message_primary or type(exc).__name__}") from exc
        except (psycopg.OperationalError, TimeoutError) as exc:
            raise StoreUnavailable(f"the spend database is not reachable: {type(exc).__name__}") from exc

    async def _scalar(self, query: sql.Composable | str, params: dict[str, Any] | tuple[Any, ...] = (), *,
                      plan: Plan = "auto") -> Any:
        try:
            async with self.pool.connection() as conn:
                async with conn.cursor() as cur:
                    rows = await _fetch(cur, query, params, plan)
                    return rows[0][0] if rows else None
        except psycopg.DataError as exc:
            raise BadRequest(f"a parameter is not acceptable to the database: {exc.diag.message_primary or type(exc).__name__}") from exc
        except (psycopg.OperationalError, TimeoutError) as exc:
            raise StoreUnavailable(f"the spend database is not reachable: {type(exc).__name__}") from exc


async def _fetch(cur: psycopg.AsyncCursor[Any], query: sql.Composable | str, params: dict[str, Any] | tuple[Any, ...],
                 plan: Plan) -> list[Any]:
    if plan != "generic":
        await cur.execute(query, params, prepare=False if plan == "custom" else None)  # type: ignore[arg-type]
        return await cur.fetchall()
    async with cur.connection.pipeline():  # the setting and the statement in one round trip
        await cur.connection.execute(GENERIC_PLAN)
        await cur.execute(query, params, prepare=True)  # type: ignore[arg-type]
        return await cur.fetchall()
