-- What the ledger needs so that a replay rebuilds every row identically.
--
-- created_at / updated_at on the entity tables come from the events (never now()), so they may be
-- unknown (NULL) for a row that exists only because spend arrived before its admin event.
-- spend_as_of: the event time of the latest log counted in the entity's budget window.

ALTER TABLE "LiteLLM_VerificationToken"
    ALTER COLUMN created_at DROP NOT NULL, ALTER COLUMN created_at DROP DEFAULT,
    ALTER COLUMN updated_at DROP NOT NULL, ALTER COLUMN updated_at DROP DEFAULT,
    ADD COLUMN spend_as_of TIMESTAMPTZ;
ALTER TABLE "LiteLLM_TeamTable"
    ALTER COLUMN created_at DROP NOT NULL, ALTER COLUMN created_at DROP DEFAULT,
    ALTER COLUMN updated_at DROP NOT NULL, ALTER COLUMN updated_at DROP DEFAULT,
    ADD COLUMN spend_as_of TIMESTAMPTZ;
ALTER TABLE "LiteLLM_UserTable"
    ALTER COLUMN created_at DROP NOT NULL, ALTER COLUMN created_at DROP DEFAULT,
    ALTER COLUMN updated_at DROP NOT NULL, ALTER COLUMN updated_at DROP DEFAULT,
    ADD COLUMN spend_as_of TIMESTAMPTZ;
ALTER TABLE "LiteLLM_EndUserTable"
    ALTER COLUMN created_at DROP NOT NULL, ALTER COLUMN created_at DROP DEFAULT,
    ALTER COLUMN updated_at DROP NOT NULL, ALTER COLUMN updated_at DROP DEFAULT,
    ADD COLUMN spend_as_of TIMESTAMPTZ;
ALTER TABLE "LiteLLM_TagTable"
    ALTER COLUMN created_at DROP NOT NULL, ALTER COLUMN created_at DROP DEFAULT,
    ALTER COLUMN updated_at DROP NOT NULL, ALTER COLUMN updated_at DROP DEFAULT,
    ADD COLUMN spend_as_of TIMESTAMPTZ;

-- Deleted keys, teams, users and customers. A late spend log for a deleted entity must not bring
-- its row back, whichever of the two events the ledger reads first.
CREATE TABLE tally_deleted_entities (
    entity_type TEXT        NOT NULL,
    entity_id   TEXT        NOT NULL,
    deleted_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (entity_type, entity_id)
);
