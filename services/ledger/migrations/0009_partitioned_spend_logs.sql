-- Spend logs partitioned by day, and the per-partition fencing of several ledgers.
--
-- 1. "LiteLLM_SpendLogs" becomes a table partitioned by RANGE ("startTime"), one partition per UTC
--    day named "LiteLLM_SpendLogs_YYYYMMDD", so a report over a few days reads a few partitions and
--    a day is dropped whole. The new table is built from the old one's columns (LIKE), whatever
--    earlier migrations added, and every secondary index of the old table is re-created on it. A
--    partitioned table's primary key must hold the partition key: it is (request_id, "startTime"),
--    and the ledger's insert is ON CONFLICT (request_id, "startTime") DO NOTHING (a request id
--    always comes with the same start time: both are in the one usage event).
--    The ledger makes each day's partition before it writes the day's rows. A row written by
--    anything else for a day without a partition lands in "LiteLLM_SpendLogs_default"; when that
--    day's partition is made, its rows move there.

CREATE FUNCTION tally_ensure_spend_log_partition(day date) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    name text := 'LiteLLM_SpendLogs_' || to_char(day, 'YYYYMMDD');
    low timestamptz := day::timestamp AT TIME ZONE 'UTC';
    high timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
BEGIN
    IF to_regclass(quote_ident(name)) IS NOT NULL THEN
        RETURN false;
    END IF;
    -- SHARE UPDATE EXCLUSIVE: what ATTACH PARTITION takes. Inserts and reports go on; two ledgers
    -- creating the same day queue here, and the second finds the table made.
    LOCK TABLE "LiteLLM_SpendLogs" IN SHARE UPDATE EXCLUSIVE MODE;
    IF to_regclass(quote_ident(name)) IS NOT NULL THEN
        RETURN false;
    END IF;
    -- Created apart and attached (rather than CREATE TABLE ... PARTITION OF, which locks the
    -- parent exclusively); the CHECK spares ATTACH its scan of the new table, then goes.
    EXECUTE format('CREATE TABLE %I (LIKE "LiteLLM_SpendLogs" INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)', name);
    EXECUTE format('WITH moved AS (DELETE FROM "LiteLLM_SpendLogs_default" WHERE "startTime" >= %L AND "startTime" < %L RETURNING *)'
                   ' INSERT INTO %I SELECT * FROM moved', low, high, name);
    EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK ("startTime" >= %L AND "startTime" < %L)',
                   name, name || '_range', low, high);
    EXECUTE format('ALTER TABLE "LiteLLM_SpendLogs" ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', name, low, high);
    EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', name, name || '_range');
    RETURN true;
END $$;

DO $$
DECLARE
    index_definitions text[];
    definition text;
    day date;
BEGIN
    SELECT coalesce(array_agg(pg_get_indexdef(i.indexrelid)), '{}') INTO index_definitions
      FROM pg_index i
     WHERE i.indrelid = '"LiteLLM_SpendLogs"'::regclass AND NOT i.indisprimary;
    ALTER TABLE "LiteLLM_SpendLogs" RENAME TO "tally_spend_logs_unpartitioned";
    ALTER TABLE "tally_spend_logs_unpartitioned" RENAME CONSTRAINT "LiteLLM_SpendLogs_pkey" TO "tally_spend_logs_unpartitioned_pkey";
    CREATE TABLE "LiteLLM_SpendLogs" (
        LIKE "tally_spend_logs_unpartitioned" INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS
    ) PARTITION BY RANGE ("startTime");
    ALTER TABLE "LiteLLM_SpendLogs" ADD CONSTRAINT "LiteLLM_SpendLogs_pkey" PRIMARY KEY (request_id, "startTime");
    CREATE TABLE "LiteLLM_SpendLogs_default" PARTITION OF "LiteLLM_SpendLogs" DEFAULT;
    FOR day IN SELECT DISTINCT ("startTime" AT TIME ZONE 'UTC')::date FROM "tally_spend_logs_unpartitioned" LOOP
        PERFORM tally_ensure_spend_log_partition(day);
    END LOOP;
    INSERT INTO "LiteLLM_SpendLogs" SELECT * FROM "tally_spend_logs_unpartitioned";
    DROP TABLE "tally_spend_logs_unpartitioned";
    FOREACH definition IN ARRAY index_definitions LOOP
        EXECUTE definition;  -- the same names, now on the partitioned table (and each partition)
    END LOOP;
END $$;

-- 2. Fencing. Each ledger claims the partitions the consumer group gives it: the claim bumps the
--    partition's epoch and reads its stored offset, in one transaction. Every batch then locks
--    the rows of the partitions it writes and checks that their epochs are still its own, in the
--    same transaction as its rows and offsets; a ledger that lost a partition (a pause, a long GC,
--    a network cut) meets a higher epoch and its batch rolls back.
CREATE TABLE tally_partition_owners (
    consumer_group TEXT        NOT NULL,
    topic          TEXT        NOT NULL,
    partition      INTEGER     NOT NULL,
    epoch          BIGINT      NOT NULL,
    owner          TEXT        NOT NULL,
    claimed_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (consumer_group, topic, partition)
);
