-- Budget leases: how much of an entity's budget window (or rpm / tpm minute) each proxy worker may
-- commit (services/proxy/budget/leases.py, docs/budgets.md). Written only by the proxies, under a
-- transaction-scoped advisory lock per (entity, window). Not a projection of the log: it holds
-- grants, not spend. It lives in a schema of its own so that a ledger replay, which rebuilds the
-- ledger's schema and swaps it in, leaves the grants in place; every statement is idempotent, so
-- each rebuilt schema applies it as a no-op, and a proxy may apply it before the ledger has.
--
-- holder: "<host>:<port>/<worker>/<boot nonce>", or "~settled" for the leases folded in once their
-- holder stopped renewing them. window_start is 0001-01-01 UTC for a budget without a duration.
CREATE SCHEMA IF NOT EXISTS tally_leases;

CREATE TABLE IF NOT EXISTS tally_leases.budget_leases (
    entity_type  TEXT        NOT NULL,
    entity_id    TEXT        NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    holder       TEXT        NOT NULL,
    granted      NUMERIC     NOT NULL CHECK (granted >= 0),
    used         NUMERIC     NOT NULL DEFAULT 0 CHECK (used >= 0),
    inflight     NUMERIC     NOT NULL DEFAULT 0 CHECK (inflight >= 0),
    expires_at   TIMESTAMPTZ,
    window_end   TIMESTAMPTZ,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (entity_type, entity_id, window_start, holder)
);

-- Pruning: rows of windows that have ended.
CREATE INDEX IF NOT EXISTS budget_leases_window_end_idx ON tally_leases.budget_leases (window_end)
    WHERE window_end IS NOT NULL;
