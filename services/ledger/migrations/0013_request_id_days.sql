-- The UTC day of each request id, so a lookup by request id reads one daily partition of
-- "LiteLLM_SpendLogs" instead of probing every day's, whose cost grows with the days kept: with a
-- cached plan 1.2-1.5 ms at 93 partitions and 5-17 ms at 365 (bench/results/RUNS.md).
--
-- tally_request_days is filled by a statement trigger on "LiteLLM_SpendLogs" from the rows each
-- insert really added (its transition table), so it is written in the same transaction as the
-- rows, by whatever writes them (the ledger's batches, a replay's rebuild), once per
-- (request id, day) however often a batch is re-read. It is partitioned by month, so retention
-- drops a whole month of entries with the month's last day (tally_drop_spend_logs_before below);
-- the entries of dropped days in a month still kept point at days with no rows: a lookup through
-- them finds nothing, which is the truth. A request id without an entry has no spend log.
--
-- An entry holds the request id's 64-bit hash (hashtextextended, the function behind hash
-- partitioning, stable across Postgres versions), not the id: ~90 B an entry instead of ~170 B
-- with a UUID. Two ids of one hash share their days; a lookup still compares the id itself in
-- the spend logs, so it only reads a day more.

CREATE TABLE tally_request_days (
    request_key BIGINT NOT NULL,
    day         DATE   NOT NULL,
    PRIMARY KEY (request_key, day)
) PARTITION BY RANGE (day);

-- Dynamic SQL throughout: no plan cached across a replay's schema swap (names resolve at each call).
CREATE FUNCTION tally_ensure_request_days_partition(month date) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    first date := date_trunc('month', month)::date;
    name text := 'tally_request_days_' || to_char(first, 'YYYYMM');
BEGIN
    IF to_regclass(quote_ident(name)) IS NOT NULL THEN
        RETURN;
    END IF;
    -- As tally_ensure_spend_log_partition: two writers making the same month queue here.
    LOCK TABLE tally_request_days IN SHARE UPDATE EXCLUSIVE MODE;
    IF to_regclass(quote_ident(name)) IS NOT NULL THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE tally_request_days INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', name);
    EXECUTE format('ALTER TABLE tally_request_days ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   name, first, (first + interval '1 month')::date);
END $$;

-- The statements that add the entries of the logs in `source`: the partitions of the months they
-- fall in made first (an insert routes its rows to the partitions there were when it started),
-- then the insert, in key order.
CREATE FUNCTION tally_request_days_statements(source text) RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY[
        format('SELECT tally_ensure_request_days_partition(m) FROM (SELECT DISTINCT'
               ' date_trunc(''month'', "startTime" AT TIME ZONE ''UTC'')::date FROM %s) AS months(m)', source),
        format('INSERT INTO tally_request_days (request_key, day) SELECT DISTINCT hashtextextended(request_id, 0),'
               ' ("startTime" AT TIME ZONE ''UTC'')::date FROM %s ORDER BY 1, 2 ON CONFLICT DO NOTHING', source)]
$$;

-- Run by the trigger's own function: only there is its transition table visible.
CREATE FUNCTION tally_note_request_days() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    statements text[] := tally_request_days_statements('tally_added_logs');
BEGIN
    EXECUTE statements[1];
    EXECUTE statements[2];
    RETURN NULL;
END $$;

CREATE TRIGGER tally_note_request_days AFTER INSERT ON "LiteLLM_SpendLogs"
    REFERENCING NEW TABLE AS tally_added_logs FOR EACH STATEMENT EXECUTE FUNCTION tally_note_request_days();

-- The entries of every log kept: run once here for the logs written before this migration (and
-- by bench/bench_reports.py after a bulk load with the trigger disabled).
CREATE FUNCTION tally_fill_request_days() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    statements text[] := tally_request_days_statements('"LiteLLM_SpendLogs"');
BEGIN
    EXECUTE statements[1];
    EXECUTE statements[2];
END $$;

SELECT tally_fill_request_days();

-- Retention: migration 0011's drop as before (renamed, called first), then every month of entries
-- wholly before the cut-off (a DROP TABLE: no row is deleted). The names returned are still the
-- spend log days dropped.
ALTER FUNCTION tally_drop_spend_logs_before(date) RENAME TO tally_drop_spend_log_days_before;

CREATE FUNCTION tally_drop_spend_logs_before(cutoff date) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    part text;
BEGIN
    RETURN QUERY SELECT tally_drop_spend_log_days_before(cutoff);
    FOR part IN
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'tally_request_days'::regclass
           AND c.relname ~ '^tally_request_days_[0-9]{6}$'
           AND (to_date(right(c.relname, 6), 'YYYYMM') + interval '1 month')::date <= cutoff
         ORDER BY 1
    LOOP
        EXECUTE format('DROP TABLE %I', part);
    END LOOP;
END $$;
