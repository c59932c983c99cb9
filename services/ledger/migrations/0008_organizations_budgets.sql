-- Organisations and budgets, named and shaped like LiteLLM's tables, and the columns that link
-- keys, customers and organisations to them. Money is NUMERIC; JSON is JSONB.

CREATE TABLE "LiteLLM_BudgetTable" (
    budget_id             TEXT PRIMARY KEY,
    max_budget            NUMERIC,
    soft_budget           NUMERIC,
    max_parallel_requests INTEGER,
    tpm_limit             BIGINT,
    rpm_limit             BIGINT,
    model_max_budget      JSONB,
    budget_duration       TEXT,
    budget_reset_at       TIMESTAMPTZ,
    created_at            TIMESTAMPTZ,
    created_by            TEXT,
    updated_at            TIMESTAMPTZ,
    updated_by            TEXT
);

CREATE TABLE "LiteLLM_OrganizationTable" (
    organization_id       TEXT PRIMARY KEY,
    organization_alias    TEXT,
    budget_id             TEXT,
    metadata              JSONB NOT NULL DEFAULT '{}',
    models                JSONB NOT NULL DEFAULT '[]',
    spend                 NUMERIC NOT NULL DEFAULT 0,
    model_spend           JSONB NOT NULL DEFAULT '{}',
    members               JSONB NOT NULL DEFAULT '[]',  -- LiteLLM_OrganizationMembershipTable rows
    max_budget            NUMERIC,                      -- the linked budget's limits, as enforced
    soft_budget           NUMERIC,
    max_parallel_requests INTEGER,
    tpm_limit             BIGINT,
    rpm_limit             BIGINT,
    budget_duration       TEXT,
    budget_reset_at       TIMESTAMPTZ,
    created_at            TIMESTAMPTZ,
    created_by            TEXT,
    updated_at            TIMESTAMPTZ,
    updated_by            TEXT,
    window_start          TIMESTAMPTZ,
    spend_as_of           TIMESTAMPTZ
);

ALTER TABLE "LiteLLM_VerificationToken"
    ADD COLUMN organization_id        TEXT,
    ADD COLUMN budget_id              TEXT,
    ADD COLUMN model_max_budget       JSONB NOT NULL DEFAULT '{}',
    ADD COLUMN aliases                JSONB NOT NULL DEFAULT '{}',
    ADD COLUMN config                 JSONB NOT NULL DEFAULT '{}',
    ADD COLUMN allowed_cache_controls JSONB NOT NULL DEFAULT '[]',
    ADD COLUMN allowed_routes         JSONB NOT NULL DEFAULT '[]',
    ADD COLUMN created_by             TEXT,
    ADD COLUMN updated_by             TEXT;

ALTER TABLE "LiteLLM_EndUserTable"
    ADD COLUMN budget_id TEXT;

-- The organisation daily rollup, shaped like the other daily tables (0002).
CREATE TABLE "LiteLLM_DailyOrganizationSpend" (
    id                          BIGSERIAL PRIMARY KEY,
    organization_id             TEXT NOT NULL DEFAULT '',
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
    UNIQUE (organization_id, date, api_key, model, custom_llm_provider, endpoint)
);
CREATE INDEX "LiteLLM_DailyOrganizationSpend_date_idx" ON "LiteLLM_DailyOrganizationSpend" (date);
