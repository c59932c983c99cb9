-- Spend log retention (TALLY_SPEND_LOG_RETENTION_DAYS). The horizon is the first UTC day whose
-- logs are kept; every day before it has been dropped whole. Once a day is behind the horizon its
-- rollups and totals are final: the ledger refuses (dead-letters) any event starting before the
-- horizon, checked under a share lock of this row in the batch's own transaction, and a drop
-- moves the horizon under an exclusive lock of the same row, so no batch can add to a day after
-- (or while) it is dropped.
CREATE TABLE tally_spend_log_retention (
    only_row BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
    horizon  DATE NOT NULL
);

-- Called by each batch after its logs are in tally_incoming, before anything is written.
-- SQLSTATE 22000 (data exception): the ledger splits the batch and dead-letters the late event.
CREATE FUNCTION tally_refuse_before_horizon() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    cut timestamptz;
    late text;
BEGIN
    -- Dynamic SQL: no plan cached across a replay's schema swap (names resolve at each call).
    EXECUTE 'SELECT horizon::timestamp AT TIME ZONE ''UTC'' FROM tally_spend_log_retention FOR SHARE' INTO cut;
    IF cut IS NULL THEN
        RETURN;
    END IF;
    EXECUTE 'SELECT request_id FROM tally_incoming WHERE "startTime" < $1 LIMIT 1' INTO late USING cut;
    IF late IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22000',
            MESSAGE = format('request %s starts before the spend log retention horizon %s: its day was dropped and its totals are final', late, cut);
    END IF;
END $$;

-- Move the horizon to `cutoff` (never back) and drop every daily partition before it, and any row
-- before it in the default partition. Returns the names of the partitions dropped.
CREATE FUNCTION tally_drop_spend_logs_before(cutoff date) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    part text;
BEGIN
    INSERT INTO tally_spend_log_retention AS r (horizon) VALUES (cutoff)
        ON CONFLICT (only_row) DO UPDATE SET horizon = greatest(r.horizon, EXCLUDED.horizon);
    FOR part IN
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = '"LiteLLM_SpendLogs"'::regclass
           AND c.relname ~ '^LiteLLM_SpendLogs_[0-9]{8}$'
           AND to_date(right(c.relname, 8), 'YYYYMMDD') < cutoff
         ORDER BY 1
    LOOP
        EXECUTE format('DROP TABLE %I', part);
        RETURN NEXT part;
    END LOOP;
    DELETE FROM "LiteLLM_SpendLogs_default" WHERE "startTime" < cutoff::timestamp AT TIME ZONE 'UTC';
END $$;
