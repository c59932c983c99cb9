"""The set-based SQL of one batch: its spend logs are copied into a temp table, inserted with
`ON CONFLICT DO NOTHING`, and the request ids really inserted are kept in a second temp table, so
the daily rollups and the entities' new spend are summed by Postgres from exactly those rows
(one statement per daily table, each row touched once) instead of row by row in Python.

The rules are the ones LiteLLM's daily tables follow and the ledger always applied: a log rolls
into the user, team and customer tables only when it names one (not NULL, not ''), into the tag
table once per distinct tag, into the api-key table always; the day is its UTC start day; a
new rollup row takes the model_group of the first log read (`seq` is the reading order)."""

from __future__ import annotations

from psycopg import sql

from services.ledger.rollup import DAILY_TABLES
from services.ledger.rows import ENDPOINTS, SPEND_LOG_COLUMNS

# Both live until the end of the transaction; `seq` is the order the events were read in.
CREATE_TEMP_TABLES = sql.SQL(
    'CREATE TEMP TABLE IF NOT EXISTS tally_incoming (LIKE "LiteLLM_SpendLogs", seq integer NOT NULL)'
    " ON COMMIT DELETE ROWS;"
    " CREATE TEMP TABLE IF NOT EXISTS tally_inserted (request_id text PRIMARY KEY) ON COMMIT DELETE ROWS"
)

_LOG_COLUMNS = sql.SQL(", ").join(map(sql.Identifier, SPEND_LOG_COLUMNS))
COPY_INCOMING = sql.SQL("COPY tally_incoming ({}, seq) FROM STDIN").format(_LOG_COLUMNS)

# Sorted by request_id so two ledgers inserting the same ids queue instead of deadlocking.
INSERT_LOGS = sql.SQL(
    "WITH ins AS ("
    ' INSERT INTO "LiteLLM_SpendLogs" ({cols}) SELECT {cols} FROM tally_incoming ORDER BY request_id'
    " ON CONFLICT (request_id) DO NOTHING RETURNING request_id)"
    " INSERT INTO tally_inserted SELECT request_id FROM ins RETURNING request_id"
).format(cols=_LOG_COLUMNS)

_NEW_LOGS = sql.SQL("tally_incoming l JOIN tally_inserted USING (request_id)")
# One row per (log, distinct tag): a tag repeated in one call counts once.
_TAGS = sql.SQL(" CROSS JOIN LATERAL (SELECT DISTINCT jsonb_array_elements_text(l.request_tags) AS tag) g")

# Daily table → (entity expression, extra FROM, filter).
_DAILY_ENTITY: dict[str, tuple[str, sql.Composable, str]] = {
    "LiteLLM_DailyUserSpend": ('l."user"', sql.SQL(""), "WHERE l.\"user\" <> ''"),
    "LiteLLM_DailyTeamSpend": ("l.team_id", sql.SQL(""), "WHERE l.team_id <> ''"),
    "LiteLLM_DailyTagSpend": ("g.tag", _TAGS, ""),
    "LiteLLM_DailyEndUserSpend": ("l.end_user", sql.SQL(""), "WHERE l.end_user <> ''"),
    "LiteLLM_DailyApiKeySpend": ("l.api_key", sql.SQL(""), ""),
}

_ENDPOINT = sql.SQL("CASE l.call_type {} ELSE '' END").format(
    sql.SQL(" ").join(sql.SQL("WHEN {} THEN {}").format(sql.Literal(k), sql.Literal(v)) for k, v in ENDPOINTS.items())
)


def rollup_upsert(table: str) -> sql.Composed:
    """Add the batch's inserted logs to `table`, rows written in key order (deadlock-free)."""
    entity, join, where = _DAILY_ENTITY[table]
    return sql.SQL(
        "INSERT INTO {table} AS t ({entity_col}, date, api_key, model, model_group, custom_llm_provider, endpoint,"
        " prompt_tokens, completion_tokens, cache_read_input_tokens, cache_creation_input_tokens, spend,"
        " api_requests, successful_requests, failed_requests, created_at, updated_at)"
        " SELECT entity, date, api_key, model, (array_agg(model_group ORDER BY seq))[1], provider, endpoint,"
        " sum(prompt_tokens), sum(completion_tokens), sum(cache_read_input_tokens), sum(cache_creation_input_tokens),"
        " sum(spend), count(*), count(*) FILTER (WHERE status = 'success'), count(*) FILTER (WHERE status <> 'success'),"
        ' min("startTime"), max("startTime")'
        " FROM (SELECT {entity} AS entity, to_char(l.\"startTime\" AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS date,"
        " l.api_key, l.model, l.model_group, COALESCE(l.custom_llm_provider, '') AS provider, {endpoint} AS endpoint,"
        " l.prompt_tokens, l.completion_tokens, l.cache_read_input_tokens, l.cache_creation_input_tokens, l.spend,"
        ' l.status, l."startTime", l.seq FROM {new_logs}{join} {where}) AS v'
        " GROUP BY entity, date, api_key, model, provider, endpoint"
        " ORDER BY entity, date, api_key, model, provider, endpoint"
        " ON CONFLICT ({entity_col}, date, api_key, model, custom_llm_provider, endpoint) DO UPDATE SET"
        " prompt_tokens = t.prompt_tokens + EXCLUDED.prompt_tokens,"
        " completion_tokens = t.completion_tokens + EXCLUDED.completion_tokens,"
        " cache_read_input_tokens = t.cache_read_input_tokens + EXCLUDED.cache_read_input_tokens,"
        " cache_creation_input_tokens = t.cache_creation_input_tokens + EXCLUDED.cache_creation_input_tokens,"
        " spend = t.spend + EXCLUDED.spend, api_requests = t.api_requests + EXCLUDED.api_requests,"
        " successful_requests = t.successful_requests + EXCLUDED.successful_requests,"
        " failed_requests = t.failed_requests + EXCLUDED.failed_requests,"
        " created_at = LEAST(t.created_at, EXCLUDED.created_at),"
        " updated_at = GREATEST(t.updated_at, EXCLUDED.updated_at)"
    ).format(
        table=sql.Identifier(table), entity_col=sql.Identifier(DAILY_TABLES[table]), entity=sql.SQL(entity),
        endpoint=_ENDPOINT, new_logs=_NEW_LOGS, join=join, where=sql.SQL(where),
    )


ROLLUP_UPSERTS: dict[str, sql.Composed] = {table: rollup_upsert(table) for table in sorted(DAILY_TABLES)}

# (entity_type, entity_id, event time, spend) of every inserted log, per entity it adds to.
_ENTITY_LOGS = sql.SQL(
    "SELECT 'key' AS entity_type, l.api_key AS entity_id, l.\"startTime\" AS at, l.spend FROM {new}"
    " UNION ALL SELECT 'team', l.team_id, l.\"startTime\", l.spend FROM {new} WHERE l.team_id <> ''"
    " UNION ALL SELECT 'user', l.\"user\", l.\"startTime\", l.spend FROM {new} WHERE l.\"user\" <> ''"
    " UNION ALL SELECT 'customer', l.end_user, l.\"startTime\", l.spend FROM {new} WHERE l.end_user <> ''"
    " UNION ALL SELECT 'tag', g.tag, l.\"startTime\", l.spend FROM {new}{tags}"
).format(new=_NEW_LOGS, tags=_TAGS)

# Per entity: earliest and latest event time and the spend of its newly inserted logs.
ENTITY_SUMS = sql.SQL(
    "SELECT entity_type, entity_id, min(at), max(at), sum(spend) FROM ({}) e GROUP BY 1, 2"
).format(_ENTITY_LOGS)

# The spend of those logs from a start time on, for the few entities whose window began inside
# the batch (the rest count all of their new logs).
ENTITY_SUMS_FROM = sql.SQL(
    "SELECT v.entity_type, v.entity_id, sum(e.spend)"
    " FROM unnest(%s::text[], %s::text[], %s::timestamptz[]) AS v(entity_type, entity_id, start)"
    " JOIN ({}) e ON e.entity_type = v.entity_type AND e.entity_id = v.entity_id AND e.at >= v.start"
    " GROUP BY 1, 2"
).format(_ENTITY_LOGS)
