"""The set-based SQL of one batch. Its spend logs are copied into a temp table, inserted with
`ON CONFLICT DO NOTHING`, and the rows really inserted are kept, reduced to what the rollups
need, in a second temp table (`tally_new`, filled in the same statement from the RETURNING set).
The daily rollups and the entities' new spend are then summed by Postgres from `tally_new` (one
statement per daily table, each row touched once) instead of log by log in Python.

The rules are the ones LiteLLM's daily tables follow and the ledger always applied: a log rolls
into the user, team and customer tables only when it names one (not NULL, not ''), into the tag
table once per distinct tag, into the api-key table always; the day is its UTC start day; a
new rollup row takes the model_group of the first log read (`seq` is the reading order)."""

from __future__ import annotations

from psycopg import sql

from services.ledger.rollup import DAILY_TABLES
from services.ledger.rows import ENDPOINTS, SPEND_LOG_COLUMNS

# Both live until the end of the transaction. tally_incoming: the rows as copied, plus the
# call's distinct tags when request_tags repeats one (rows.copy_row), the budget lease holder that
# admitted it (holder_spend.py) and the reading order.
CREATE_TEMP_TABLES = tuple(sql.SQL(q) for q in (
    'CREATE TEMP TABLE IF NOT EXISTS tally_incoming (LIKE "LiteLLM_SpendLogs", distinct_tags jsonb, lease_holder text,'
    " seq integer NOT NULL) ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS tally_new (seq integer NOT NULL, api_key text NOT NULL, user_id text,"
    " team_id text, end_user text, tags jsonb NOT NULL, at timestamptz NOT NULL, date text NOT NULL,"
    " model text NOT NULL, model_group text, provider text NOT NULL, endpoint text NOT NULL,"
    " prompt_tokens integer NOT NULL, completion_tokens integer NOT NULL, cache_read_input_tokens integer NOT NULL,"
    " cache_creation_input_tokens integer NOT NULL, spend numeric NOT NULL, success boolean NOT NULL,"
    " organization_id text, lease_holder text)"
    " ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS tally_new_tags (LIKE tally_new, tag text NOT NULL) ON COMMIT DELETE ROWS",
))

_LOG_COLUMNS = sql.SQL(", ").join(map(sql.Identifier, SPEND_LOG_COLUMNS))
COPY_INCOMING = sql.SQL("COPY tally_incoming ({}, distinct_tags, lease_holder, seq) FROM STDIN").format(_LOG_COLUMNS)

_ENDPOINT = sql.SQL("CASE l.call_type {} ELSE '' END").format(
    sql.SQL(" ").join(sql.SQL("WHEN {} THEN {}").format(sql.Literal(k), sql.Literal(v)) for k, v in ENDPOINTS.items())
)

# Retention (migration 0011, retention.py): an event starting before the horizon (a dropped day)
# fails the batch as a data error, so it is split off and dead-lettered; nothing is written.
REFUSE_BEFORE_HORIZON = sql.SQL("SELECT tally_refuse_before_horizon()")

# Spend logs are partitioned by day (migration 0009): the batch's days get their partitions first,
# and tomorrow's is made ahead, so midnight does not wait on DDL.
ENSURE_PARTITIONS = sql.SQL(
    "SELECT tally_ensure_spend_log_partition(d) FROM (SELECT DISTINCT (\"startTime\" AT TIME ZONE 'UTC')::date AS d"
    " FROM tally_incoming UNION SELECT (now() AT TIME ZONE 'UTC')::date + 1) AS days ORDER BY d"
)

# Sorted by request_id so two ledgers inserting the same ids queue instead of deadlocking. Fills
# tally_new and, one row per distinct tag of each log, tally_new_tags (real rows: the tag sums
# need no join and the planner sizes them right); returns the `seq` of the rows NOT inserted
# (already logged): usually none, so a batch's answer is not thousands of rows to read.
INSERT_LOGS = sql.SQL(
    "WITH ins AS ("
    ' INSERT INTO "LiteLLM_SpendLogs" ({cols}) SELECT {cols} FROM tally_incoming ORDER BY request_id'
    ' ON CONFLICT (request_id, "startTime") DO NOTHING RETURNING request_id),'
    " new AS (INSERT INTO tally_new SELECT l.seq, l.api_key, l.\"user\", l.team_id, l.end_user,"
    " COALESCE(l.distinct_tags, l.request_tags), l.\"startTime\","
    " to_char(l.\"startTime\" AT TIME ZONE 'UTC', 'YYYY-MM-DD'), l.model, l.model_group,"
    " COALESCE(l.custom_llm_provider, ''), {endpoint}, l.prompt_tokens, l.completion_tokens,"
    " l.cache_read_input_tokens, l.cache_creation_input_tokens, l.spend, l.status = 'success', l.organization_id, l.lease_holder"
    " FROM tally_incoming l JOIN ins USING (request_id) RETURNING *),"
    " tags AS (INSERT INTO tally_new_tags SELECT new.*, t FROM new, jsonb_array_elements_text(new.tags) t)"
    " SELECT l.seq FROM tally_incoming l WHERE NOT EXISTS (SELECT FROM new WHERE new.seq = l.seq)"
).format(cols=_LOG_COLUMNS, endpoint=_ENDPOINT)


# Daily table → (entity expression, temp table, filter).
_DAILY_ENTITY: dict[str, tuple[str, str, str]] = {
    "LiteLLM_DailyUserSpend": ("n.user_id", "tally_new", "WHERE n.user_id <> ''"),
    "LiteLLM_DailyTeamSpend": ("n.team_id", "tally_new", "WHERE n.team_id <> ''"),
    "LiteLLM_DailyTagSpend": ("n.tag", "tally_new_tags", ""),
    "LiteLLM_DailyEndUserSpend": ("n.end_user", "tally_new", "WHERE n.end_user <> ''"),
    "LiteLLM_DailyApiKeySpend": ("n.api_key", "tally_new", ""),
    "LiteLLM_DailyOrganizationSpend": ("n.organization_id", "tally_new", "WHERE n.organization_id <> ''"),
}


def rollup_upsert(table: str) -> sql.Composed:
    """Add the batch's inserted logs to `table`, rows written in key order (deadlock-free).
    The model_group comes from the group's first log (min seq), joined back: no ordered aggregate."""
    entity, source, where = _DAILY_ENTITY[table]
    return sql.SQL(
        "INSERT INTO {table} AS t ({entity_col}, date, api_key, model, model_group, custom_llm_provider, endpoint,"
        " prompt_tokens, completion_tokens, cache_read_input_tokens, cache_creation_input_tokens, spend,"
        " api_requests, successful_requests, failed_requests, created_at, updated_at)"
        " SELECT r.entity, r.date, r.api_key, r.model, f.model_group, r.provider, r.endpoint, r.prompt_tokens,"
        " r.completion_tokens, r.cache_read_input_tokens, r.cache_creation_input_tokens, r.spend, r.api_requests,"
        " r.successful_requests, r.failed_requests, r.first_seen, r.last_seen"
        " FROM (SELECT {entity} AS entity, n.date, n.api_key, n.model, n.provider, n.endpoint,"
        " sum(n.prompt_tokens) AS prompt_tokens, sum(n.completion_tokens) AS completion_tokens,"
        " sum(n.cache_read_input_tokens) AS cache_read_input_tokens,"
        " sum(n.cache_creation_input_tokens) AS cache_creation_input_tokens, sum(n.spend) AS spend,"
        " count(*) AS api_requests, count(*) FILTER (WHERE n.success) AS successful_requests,"
        " count(*) FILTER (WHERE NOT n.success) AS failed_requests, min(n.at) AS first_seen, max(n.at) AS last_seen,"
        " min(n.seq) AS first_seq"
        " FROM {source} n {where} GROUP BY 1, 2, 3, 4, 5, 6) AS r"
        " JOIN tally_new f ON f.seq = r.first_seq"
        " ORDER BY r.entity, r.date, r.api_key, r.model, r.provider, r.endpoint"
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
        source=sql.Identifier(source), where=sql.SQL(where),
    )


# All five in one statement (each statement costs its parse, plan and executor start-up, a few
# ms on a busy machine); the tables are distinct, so no CTE sees another's rows.
ROLLUP_UPSERTS = sql.SQL("WITH {} SELECT 1").format(sql.SQL(", ").join(
    sql.SQL("{} AS ({})").format(sql.Identifier(f"roll_{i}"), rollup_upsert(table))
    for i, table in enumerate(sorted(DAILY_TABLES))
))

# (entity_type, entity_id, event time, spend) of every inserted log, per entity it adds to.
ENTITY_BRANCHES = (
    ("key", "n.api_key", "tally_new", ""),
    ("team", "n.team_id", "tally_new", "WHERE n.team_id <> ''"),
    ("user", "n.user_id", "tally_new", "WHERE n.user_id <> ''"),
    ("customer", "n.end_user", "tally_new", "WHERE n.end_user <> ''"),
    ("tag", "n.tag", "tally_new_tags", ""),
    ("organization", "n.organization_id", "tally_new", "WHERE n.organization_id <> ''"),
)
_ENTITY_LOGS = sql.SQL(" UNION ALL ").join(
    sql.SQL("SELECT {t} AS entity_type, {e} AS entity_id, n.at, n.spend FROM {j} n {w}").format(
        t=sql.Literal(t), e=sql.SQL(e), j=sql.Identifier(j), w=sql.SQL(w))
    for t, e, j, w in ENTITY_BRANCHES
)

# Per entity: earliest and latest event time and the spend of its newly inserted logs (summed
# per entity type, each on its own key: small hash aggregates).
ENTITY_SUMS = sql.SQL(" UNION ALL ").join(
    sql.SQL("SELECT {t}, {e}, min(n.at), max(n.at), sum(n.spend) FROM {j} n {w} GROUP BY 2").format(
        t=sql.Literal(t), e=sql.SQL(e), j=sql.Identifier(j), w=sql.SQL(w))
    for t, e, j, w in ENTITY_BRANCHES
)

# The spend of those logs from a start time on, for the few entities whose window began inside
# the batch (the rest count all of their new logs).
ENTITY_SUMS_FROM = sql.SQL(
    "SELECT v.entity_type, v.entity_id, sum(e.spend)"
    " FROM unnest(%s::text[], %s::text[], %s::timestamptz[]) AS v(entity_type, entity_id, start)"
    " JOIN ({}) e ON e.entity_type = v.entity_type AND e.entity_id = v.entity_id AND e.at >= v.start"
    " GROUP BY 1, 2"
).format(_ENTITY_LOGS)

# Per entity type, the ids the batch's inserted logs add to (what the totals step locks).
NEW_ENTITY_IDS: dict[str, sql.Composed] = {
    t: sql.SQL("SELECT DISTINCT {e} FROM {j} n {w}").format(e=sql.SQL(e), j=sql.Identifier(j), w=sql.SQL(w))
    for t, e, j, w in ENTITY_BRANCHES
}
