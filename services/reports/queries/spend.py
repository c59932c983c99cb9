"""The spend logs' queries (/spend/logs, /global/spend/logs: per request, or summarised per day,
key, user and model) and the key and user tables by spend (/spend/keys, /spend/users)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from psycopg import sql

from services.reports.params import DateRange
from services.reports.queries.base import NAMED_AND_UNASSIGNED, USER, Plan, Queries

# LiteLLM's dashboards read `user_api_key` and `usage_object` in a log's metadata. Both repeat
# columns of the row (storing them would add ~400 B a row), so they are rebuilt here on read; a
# value stored in the metadata wins.
_METADATA = """jsonb_build_object(
           'user_api_key', api_key,
           'usage_object', jsonb_build_object(
               'prompt_tokens', prompt_tokens, 'completion_tokens', completion_tokens, 'total_tokens', total_tokens,
               'prompt_tokens_details', jsonb_build_object('cached_tokens', cache_read_input_tokens),
               'completion_tokens_details', jsonb_build_object('reasoning_tokens', reasoning_tokens),
               'cache_read_input_tokens', cache_read_input_tokens,
               'cache_creation_input_tokens', cache_creation_input_tokens)
       ) || COALESCE(metadata, '{}'::jsonb) AS metadata"""
_LOG_COLUMNS = f"""request_id, call_type, api_key, spend, total_tokens, prompt_tokens, completion_tokens, "startTime", "endTime",
       "completionStartTime", request_duration_ms, model, model_id, model_group, custom_llm_provider, api_base, "user",
       {_METADATA}, cache_hit, cache_key, request_tags, team_id, organization_id, end_user, requester_ip_address, session_id,
       status, cache_read_input_tokens, cache_creation_input_tokens, reasoning_tokens, priced_model, unpriced,
       catalog_version"""
LOG_SORTS = ("startTime", "spend", "total_tokens", "request_duration_ms", "model")


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=timezone.utc)


class SpendQueries(Queries):
    async def request_days(self, request_id: str) -> tuple[datetime, datetime] | None:
        """The UTC days holding `request_id`'s logs, from the ledger's tally_request_days
        (migration 0013), as [start, end) of the first to the last; None: it has no log."""
        rows = await self._rows("SELECT min(day) AS first, max(day) AS last FROM tally_request_days"
                                " WHERE request_key = hashtextextended(%(rid)s, 0)", {"rid": request_id}, plan="generic")
        first, last = rows[0]["first"], rows[0]["last"]
        if first is None:
            return None
        return _midnight(first), _midnight(last + timedelta(days=1))

    async def log_by_request_id(self, request_id: str, own_key: str | None) -> list[dict[str, Any]]:
        # Through its days, so Postgres plans and reads only their partitions, not every day's.
        days = await self.request_days(request_id)
        if days is None:
            return []
        return await self._rows(
            f'SELECT {_LOG_COLUMNS} FROM "LiteLLM_SpendLogs" WHERE request_id = %(rid)s'
            ' AND "startTime" >= %(start_at)s AND "startTime" < %(end_before)s'
            + (" AND api_key = %(own)s" if own_key else ""),
            {"rid": request_id, "own": own_key, "start_at": days[0], "end_before": days[1]},
            plan="custom",
        )

    async def logs(self, days: DateRange | None, *, api_key: str | None, user_id: str | None, limit: int,
                   offset: int = 0) -> list[dict[str, Any]]:
        where = ["TRUE"]
        if days is not None:
            where.append('"startTime" >= %(start_at)s AND "startTime" < %(end_before)s')
        if api_key is not None:
            where.append("api_key = %(api_key)s")
        if user_id is not None:
            where.append('"user" = %(user_id)s')
        params: dict[str, Any] = {"api_key": api_key, "user_id": user_id, "limit": limit, "offset": offset}
        if days is not None:
            params.update(start_at=days.start_at, end_before=days.end_before)
        return await self._rows(
            f'SELECT {_LOG_COLUMNS} FROM "LiteLLM_SpendLogs" WHERE {" AND ".join(where)}'
            ' ORDER BY "startTime" DESC, request_id DESC LIMIT %(limit)s OFFSET %(offset)s',
            params,
        )

    async def logs_page(self, where: dict[str, Any], *, sort_by: str, descending: bool, offset: int, limit: int,
                        total: int | None = None) -> tuple[int, list[dict[str, Any]]]:
        """One page of the logs matching `where` (column → value; see handlers/spend.py for the keys)
        and how many match in all (counted here unless `total` is known). `sort_by` is one of
        LOG_SORTS; ties go by request_id."""
        assert sort_by in LOG_SORTS
        conditions = ['"startTime" >= %(start_at)s AND "startTime" < %(end_before)s']
        for name, condition in (("api_keys", "api_key = ANY(%(api_keys)s)"), ("user_id", '"user" = %(user_id)s'),
                                ("request_id", "request_id = %(request_id)s"), ("team_id", "team_id = %(team_id)s"),
                                ("end_user", "end_user = %(end_user)s"), ("model", "model = %(model)s"),
                                ("tag", "request_tags ? %(tag)s"), ("min_spend", "spend >= %(min_spend)s"),
                                ("max_spend", "spend <= %(max_spend)s")):
            if where.get(name) is not None:
                conditions.append(condition)
        if where.get("status") == "success":
            conditions.append("status = 'success'")
        elif where.get("status") == "failure":
            conditions.append("status <> 'success'")
        filter_ = " AND ".join(conditions)
        direction = "DESC" if descending else "ASC"
        # Only latency may be NULL; the others keep Postgres' default order so that time, the
        # page's default, walks the ("startTime", request_id) index backwards instead of sorting.
        nulls = " NULLS LAST" if sort_by == "request_duration_ms" else ""
        plan: Plan = "auto"
        if where.get("request_id") is not None:  # the range narrowed to the request's days
            days = await self.request_days(where["request_id"])
            if days is None:
                return 0, []
            where = {**where, "start_at": max(where["start_at"], days[0]), "end_before": min(where["end_before"], days[1])}
            if where["start_at"] >= where["end_before"]:
                return 0, []
            plan = "custom"
        rows = await self._rows(
            f'SELECT {_LOG_COLUMNS} FROM "LiteLLM_SpendLogs" WHERE {filter_}'
            f' ORDER BY "{sort_by}" {direction}{nulls}, request_id {direction} OFFSET %(offset)s LIMIT %(limit)s',
            {**where, "offset": offset, "limit": limit}, plan=plan,
        )
        if total is None and offset == 0 and len(rows) < limit:
            total = len(rows)  # the first page holds every match: nothing more to count
        if total is None:
            total = await self._scalar(f'SELECT COUNT(*) FROM "LiteLLM_SpendLogs" WHERE {filter_}', where, plan=plan)
        return int(total or 0), rows

    async def user_spend_rows(self, days: DateRange, *, api_key: str | None, user_id: str | None) -> list[dict[str, Any]]:
        """Per day, key, user and model (user "" for spend without one): what /spend/logs summarises."""
        filter_ = sql.SQL("")
        if api_key is not None:
            filter_ = filter_ + sql.SQL(" AND r.api_key = %(api_key)s")
        if user_id is not None:
            filter_ = filter_ + sql.SQL(" AND r.user_id = %(user_id)s")
        rows = await self._rows(
            sql.SQL("WITH " + NAMED_AND_UNASSIGNED + """
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
