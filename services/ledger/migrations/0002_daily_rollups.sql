-- Daily rollups, one row per (entity, day, api_key, model, provider, endpoint), as in LiteLLM.
-- Dimension columns are NOT NULL DEFAULT '' so the unique key needs no NULL special case.

CREATE TABLE "LiteLLM_DailyUserSpend" (
    id                          BIGSERIAL PRIMARY KEY,
    user_id                     TEXT NOT NULL DEFAULT '',
    date                        TEXT NOT NULL,             -- YYYY-MM-DD (UTC), as LiteLLM stores it
    api_key                     TEXT NOT NULL DEFAULT '',
    model                       TEXT NOT NULL DEFAULT '',
    model_group                 TEXT NOT NULL DEFAULT '',
    custom_llm_provider         TEXT NOT NULL DEFAULT '',
    endpoint                    TEXT NOT NULL DEFAULT '',
    prompt_tokens               BIGINT NOT NULL DEFAULT 0,
    completion_tokens           BIGINT NOT NULL DEFAULT 0,
    cache_read_input_tokens     BIGINT NOT NULL DEFAULT 0,
    cache_creation_input_tokens BIGINT NOT NULL DEFAULT 0,
    spend                       NUMERIC NOT NULL DEFAULT 0,
    api_requests                BIGINT NOT NULL DEFAULT 0,
    successful_requests         BIGINT NOT NULL DEFAULT 0,
    failed_requests             BIGINT NOT NULL DEFAULT 0,
    created_at                  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (user_id, date, api_key, model, custom_llm_provider, endpoint)
);
CREATE INDEX "LiteLLM_DailyUserSpend_date_idx" ON "LiteLLM_DailyUserSpend" (date);

CREATE TABLE "LiteLLM_DailyTeamSpend" (
    id                          BIGSERIAL PRIMARY KEY,
    team_id                     TEXT NOT NULL DEFAULT '',
    date                        TEXT NOT NULL,             -- YYYY-MM-DD (UTC), as LiteLLM stores it
    api_key                     TEXT NOT NULL DEFAULT '',
    model                       TEXT NOT NULL DEFAULT '',
    model_group                 TEXT NOT NULL DEFAULT '',
    custom_llm_provider         TEXT NOT NULL DEFAULT '',
    endpoint                    TEXT NOT NULL DEFAULT '',
    prompt_tokens               BIGINT NOT NULL DEFAULT 0,
    completion_tokens           BIGINT NOT NULL DEFAULT 0,
    cache_read_input_tokens     BIGINT NOT NULL DEFAULT 0,
    cache_creation_input_tokens BIGINT NOT NULL DEFAULT 0,
    spend                       NUMERIC NOT NULL DEFAULT 0,
    api_requests                BIGINT NOT NULL DEFAULT 0,
    successful_requests         BIGINT NOT NULL DEFAULT 0,
    failed_requests             BIGINT NOT NULL DEFAULT 0,
    created_at                  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (team_id, date, api_key, model, custom_llm_provider, endpoint)
);
CREATE INDEX "LiteLLM_DailyTeamSpend_date_idx" ON "LiteLLM_DailyTeamSpend" (date);

CREATE TABLE "LiteLLM_DailyTagSpend" (
    id                          BIGSERIAL PRIMARY KEY,
    tag                         TEXT NOT NULL DEFAULT '',
    date                        TEXT NOT NULL,             -- YYYY-MM-DD (UTC), as LiteLLM stores it
    api_key                     TEXT NOT NULL DEFAULT '',
    model                       TEXT NOT NULL DEFAULT '',
    model_group                 TEXT NOT NULL DEFAULT '',
    custom_llm_provider         TEXT NOT NULL DEFAULT '',
    endpoint                    TEXT NOT NULL DEFAULT '',
    prompt_tokens               BIGINT NOT NULL DEFAULT 0,
    completion_tokens           BIGINT NOT NULL DEFAULT 0,
    cache_read_input_tokens     BIGINT NOT NULL DEFAULT 0,
    cache_creation_input_tokens BIGINT NOT NULL DEFAULT 0,
    spend                       NUMERIC NOT NULL DEFAULT 0,
    api_requests                BIGINT NOT NULL DEFAULT 0,
    successful_requests         BIGINT NOT NULL DEFAULT 0,
    failed_requests             BIGINT NOT NULL DEFAULT 0,
    created_at                  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (tag, date, api_key, model, custom_llm_provider, endpoint)
);
CREATE INDEX "LiteLLM_DailyTagSpend_date_idx" ON "LiteLLM_DailyTagSpend" (date);

CREATE TABLE "LiteLLM_DailyEndUserSpend" (
    id                          BIGSERIAL PRIMARY KEY,
    end_user_id                 TEXT NOT NULL DEFAULT '',
    date                        TEXT NOT NULL,             -- YYYY-MM-DD (UTC), as LiteLLM stores it
    api_key                     TEXT NOT NULL DEFAULT '',
    model                       TEXT NOT NULL DEFAULT '',
    model_group                 TEXT NOT NULL DEFAULT '',
    custom_llm_provider         TEXT NOT NULL DEFAULT '',
    endpoint                    TEXT NOT NULL DEFAULT '',
    prompt_tokens               BIGINT NOT NULL DEFAULT 0,
    completion_tokens           BIGINT NOT NULL DEFAULT 0,
    cache_read_input_tokens     BIGINT NOT NULL DEFAULT 0,
    cache_creation_input_tokens BIGINT NOT NULL DEFAULT 0,
    spend                       NUMERIC NOT NULL DEFAULT 0,
    api_requests                BIGINT NOT NULL DEFAULT 0,
    successful_requests         BIGINT NOT NULL DEFAULT 0,
    failed_requests             BIGINT NOT NULL DEFAULT 0,
    created_at                  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (end_user_id, date, api_key, model, custom_llm_provider, endpoint)
);
CREATE INDEX "LiteLLM_DailyEndUserSpend_date_idx" ON "LiteLLM_DailyEndUserSpend" (date);

CREATE TABLE "LiteLLM_DailyApiKeySpend" (
    id                          BIGSERIAL PRIMARY KEY,
    api_key_id                  TEXT NOT NULL DEFAULT '',
    date                        TEXT NOT NULL,             -- YYYY-MM-DD (UTC), as LiteLLM stores it
    api_key                     TEXT NOT NULL DEFAULT '',
    model                       TEXT NOT NULL DEFAULT '',
    model_group                 TEXT NOT NULL DEFAULT '',
    custom_llm_provider         TEXT NOT NULL DEFAULT '',
    endpoint                    TEXT NOT NULL DEFAULT '',
    prompt_tokens               BIGINT NOT NULL DEFAULT 0,
    completion_tokens           BIGINT NOT NULL DEFAULT 0,
    cache_read_input_tokens     BIGINT NOT NULL DEFAULT 0,
    cache_creation_input_tokens BIGINT NOT NULL DEFAULT 0,
    spend                       NUMERIC NOT NULL DEFAULT 0,
    api_requests                BIGINT NOT NULL DEFAULT 0,
    successful_requests         BIGINT NOT NULL DEFAULT 0,
    failed_requests             BIGINT NOT NULL DEFAULT 0,
    created_at                  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (api_key_id, date, api_key, model, custom_llm_provider, endpoint)
);
CREATE INDEX "LiteLLM_DailyApiKeySpend_date_idx" ON "LiteLLM_DailyApiKeySpend" (date);
