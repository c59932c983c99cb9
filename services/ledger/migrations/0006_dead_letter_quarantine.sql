-- Records a stage could neither process nor dead-letter, and the dead letters an operator has
-- replayed. Not projections of the log (a rebuild from the topics could not recreate them), so
-- they live in their own schema, which a replay's schema swap leaves where it is; the pricer
-- creates them too (shared/quarantine.py), hence IF NOT EXISTS.
CREATE SCHEMA IF NOT EXISTS tally_dlq;

CREATE TABLE IF NOT EXISTS tally_dlq.quarantine (
    id               BIGSERIAL PRIMARY KEY,
    stage            TEXT        NOT NULL,
    source_topic     TEXT        NOT NULL,
    source_partition INTEGER     NOT NULL,
    source_offset    BIGINT      NOT NULL,
    reason           TEXT        NOT NULL,
    request_id       TEXT,
    payload_bytes    BIGINT      NOT NULL,
    payload_sha256   TEXT        NOT NULL,
    excerpt          TEXT        NOT NULL,
    quarantined_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (source_topic, source_partition, source_offset)
);

CREATE TABLE IF NOT EXISTS tally_dlq.replayed (
    source_topic     TEXT        NOT NULL,
    source_partition INTEGER     NOT NULL,
    source_offset    BIGINT      NOT NULL,
    stage            TEXT        NOT NULL,
    target_topic     TEXT        NOT NULL,
    target_partition INTEGER,
    target_offset    BIGINT,
    replayed_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (source_topic, source_partition, source_offset)
);
