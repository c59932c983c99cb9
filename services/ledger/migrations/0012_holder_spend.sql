-- Each budget lease holder's spend per entity and budget window, as the ledger counted it from the
-- usage events that name the holder (`lease_holder`, set when a budget lease admitted the call).
-- The lease authority charges a dead holder's lease what this table (or its own last report) says
-- it spent, instead of its whole grant (services/proxy/budget/leases.py, docs/budgets.md).
--
-- A projection of the log like every ledger table: written in the batch's transaction from the
-- spend logs it really inserted (a redelivered or replayed event adds nothing twice), and rebuilt
-- by `replay` for every entity's current window. entity_type/entity_id/window_start name the
-- window as the leases do (tally_leases.budget_leases): window_start is 0001-01-01 UTC for a
-- window without a start.
CREATE TABLE tally_holder_spend (
    entity_type  TEXT        NOT NULL,
    entity_id    TEXT        NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    holder       TEXT        NOT NULL,
    spend        NUMERIC     NOT NULL,
    window_end   TIMESTAMPTZ,
    PRIMARY KEY (entity_type, entity_id, window_start, holder)
);

-- Pruning: rows of windows that have ended.
CREATE INDEX tally_holder_spend_window_end_idx ON tally_holder_spend (window_end) WHERE window_end IS NOT NULL;
