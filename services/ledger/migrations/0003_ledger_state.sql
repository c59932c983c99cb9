-- The ledger's own state, written in the same transaction as the rows it describes.
CREATE TABLE tally_consumer_offsets (
    consumer_group TEXT    NOT NULL,
    topic          TEXT    NOT NULL,
    partition      INTEGER NOT NULL,
    next_offset    BIGINT  NOT NULL,
    PRIMARY KEY (consumer_group, topic, partition)
);

-- Global spend resets, in log order; budget-window arithmetic reads the latest one.
CREATE TABLE tally_spend_resets (
    event_id    TEXT PRIMARY KEY,
    occurred_at TIMESTAMPTZ NOT NULL
);
