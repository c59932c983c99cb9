-- Tables named and shaped like LiteLLM's, so existing SQL dashboards keep working.
-- Money is NUMERIC (exact), times are timestamptz (UTC). No schema is named here: the runner sets
-- search_path, which lets a replay build the same tables in a fresh schema.

CREATE TABLE "LiteLLM_SpendLogs" (
    request_id                  TEXT PRIMARY KEY,
    call_type                   TEXT NOT NULL,
    api_key                     TEXT NOT NULL DEFAULT '',
    spend                       NUMERIC NOT NULL DEFAULT 0,
    total_tokens                INTEGER NOT NULL DEFAULT 0,
    prompt_tokens               INTEGER NOT NULL DEFAULT 0,
    completion_tokens           INTEGER NOT NULL DEFAULT 0,
    "startTime"                 TIMESTAMPTZ NOT NULL,
    "endTime"                   TIMESTAMPTZ NOT NULL,
    "completionStartTime"       TIMESTAMPTZ,
    request_duration_ms         INTEGER,
    model                       TEXT NOT NULL DEFAULT '',
    model_id                    TEXT,
    model_group                 TEXT,
    custom_llm_provider         TEXT,
    api_base                    TEXT,
    "user"                      TEXT,
    metadata                    JSONB,
    cache_hit                   TEXT,
    cache_key                   TEXT,
    request_tags                JSONB NOT NULL DEFAULT '[]',
    team_id                     TEXT,
    organization_id             TEXT,
    end_user                    TEXT,
    requester_ip_address        TEXT,
    session_id                  TEXT,
    status                      TEXT NOT NULL DEFAULT 'success',
    messages                    JSONB,
    response                    JSONB,
    proxy_server_request        JSONB,
    -- Tally's own columns: what priced the row and what the caller was told.
    cache_read_input_tokens     INTEGER NOT NULL DEFAULT 0,
    cache_creation_input_tokens INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens            INTEGER NOT NULL DEFAULT 0,
    priced_model                TEXT,
    unpriced                    BOOLEAN NOT NULL DEFAULT FALSE,
    catalog_version             TEXT,
    quoted_spend                NUMERIC
);
CREATE INDEX "LiteLLM_SpendLogs_startTime_request_id_idx" ON "LiteLLM_SpendLogs" ("startTime", request_id);
CREATE INDEX "LiteLLM_SpendLogs_end_user_idx" ON "LiteLLM_SpendLogs" (end_user) WHERE end_user IS NOT NULL;
CREATE INDEX "LiteLLM_SpendLogs_session_id_idx" ON "LiteLLM_SpendLogs" (session_id) WHERE session_id IS NOT NULL;
CREATE INDEX "LiteLLM_SpendLogs_api_key_startTime_idx" ON "LiteLLM_SpendLogs" (api_key, "startTime");

CREATE TABLE "LiteLLM_VerificationToken" (
    token                 TEXT PRIMARY KEY,          -- SHA-256 hex of the raw key; the raw key is never stored
    key_name              TEXT,                      -- "sk-...XXXX": a recognisable abbreviation
    key_alias             TEXT UNIQUE,
    spend                 NUMERIC NOT NULL DEFAULT 0,
    expires               TIMESTAMPTZ,
    models                JSONB NOT NULL DEFAULT '[]',
    user_id               TEXT,
    team_id               TEXT,
    permissions           JSONB NOT NULL DEFAULT '{}',
    metadata              JSONB NOT NULL DEFAULT '{}',
    max_parallel_requests INTEGER,
    tpm_limit             BIGINT,
    rpm_limit             BIGINT,
    max_budget            NUMERIC,
    soft_budget           NUMERIC,
    budget_duration       TEXT,
    budget_reset_at       TIMESTAMPTZ,
    blocked               BOOLEAN NOT NULL DEFAULT FALSE,
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    window_start          TIMESTAMPTZ                 -- Tally: start of the budget window `spend` covers
);

CREATE TABLE "LiteLLM_TeamTable" (
    team_id               TEXT PRIMARY KEY,
    team_alias            TEXT,
    organization_id       TEXT,
    admins                JSONB NOT NULL DEFAULT '[]',
    members               JSONB NOT NULL DEFAULT '[]',
    members_with_roles    JSONB NOT NULL DEFAULT '[]',
    metadata              JSONB NOT NULL DEFAULT '{}',
    models                JSONB NOT NULL DEFAULT '[]',
    spend                 NUMERIC NOT NULL DEFAULT 0,
    max_budget            NUMERIC,
    soft_budget           NUMERIC,
    max_parallel_requests INTEGER,
    tpm_limit             BIGINT,
    rpm_limit             BIGINT,
    budget_duration       TEXT,
    budget_reset_at       TIMESTAMPTZ,
    blocked               BOOLEAN NOT NULL DEFAULT FALSE,
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    window_start          TIMESTAMPTZ
);

CREATE TABLE "LiteLLM_UserTable" (
    user_id               TEXT PRIMARY KEY,
    user_alias            TEXT,
    team_id               TEXT,
    teams                 JSONB NOT NULL DEFAULT '[]',
    user_role             TEXT,
    user_email            TEXT,
    models                JSONB NOT NULL DEFAULT '[]',
    metadata              JSONB NOT NULL DEFAULT '{}',
    spend                 NUMERIC NOT NULL DEFAULT 0,
    max_budget            NUMERIC,
    soft_budget           NUMERIC,
    max_parallel_requests INTEGER,
    tpm_limit             BIGINT,
    rpm_limit             BIGINT,
    budget_duration       TEXT,
    budget_reset_at       TIMESTAMPTZ,
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    window_start          TIMESTAMPTZ
);

CREATE TABLE "LiteLLM_EndUserTable" (
    user_id               TEXT PRIMARY KEY,          -- the request's `user`: the customer
    alias                 TEXT,
    spend                 NUMERIC NOT NULL DEFAULT 0,
    allowed_model_region  TEXT,
    default_model         TEXT,
    max_budget            NUMERIC,
    budget_duration       TEXT,
    budget_reset_at       TIMESTAMPTZ,
    blocked               BOOLEAN NOT NULL DEFAULT FALSE,
    metadata              JSONB NOT NULL DEFAULT '{}',
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    window_start          TIMESTAMPTZ
);

CREATE TABLE "LiteLLM_TagTable" (
    tag_name              TEXT PRIMARY KEY,
    description           TEXT,
    spend                 NUMERIC NOT NULL DEFAULT 0,
    max_budget            NUMERIC,
    budget_duration       TEXT,
    budget_reset_at       TIMESTAMPTZ,
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    window_start          TIMESTAMPTZ
);
