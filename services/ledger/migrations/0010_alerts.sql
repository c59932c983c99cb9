-- Spend alerts (services/reports/alerts): each decision is a row per channel, recorded with the
-- follower's offsets in one transaction; the unique key makes a crossing one alert per entity,
-- window and channel however often the topics are read. Not a projection of the log (a rebuild
-- could not recreate what was sent), so it lives in its own schema, which a replay's swap leaves;
-- IF NOT EXISTS because a replay runs every migration again into its fresh schema.
CREATE SCHEMA IF NOT EXISTS tally_alerts;

CREATE TABLE IF NOT EXISTS tally_alerts.offsets (
    topic       TEXT    NOT NULL,
    partition   INTEGER NOT NULL,
    next_offset BIGINT  NOT NULL,
    PRIMARY KEY (topic, partition)
);

CREATE TABLE IF NOT EXISTS tally_alerts.deliveries (
    id              BIGSERIAL PRIMARY KEY,
    alert_key       TEXT        NOT NULL,  -- entity type:id:window start:crossing
    channel         TEXT        NOT NULL CHECK (channel IN ('slack', 'webhook')),
    entity_type     TEXT        NOT NULL,
    entity_id       TEXT        NOT NULL,
    event           TEXT        NOT NULL,
    body            TEXT        NOT NULL,  -- the exact bytes sent (and signed)
    status          TEXT        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'dead')),
    attempts        INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error      TEXT,
    decided_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at         TIMESTAMPTZ,
    UNIQUE (alert_key, channel)
);

CREATE INDEX IF NOT EXISTS deliveries_due ON tally_alerts.deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_entity ON tally_alerts.deliveries (entity_type, entity_id, decided_at DESC);
