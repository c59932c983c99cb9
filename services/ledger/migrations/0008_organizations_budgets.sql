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
