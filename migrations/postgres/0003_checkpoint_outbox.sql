-- Signed checkpoints are published to NATS with the events (PostgreSQL). Same table as
-- migrations/sqlite/0003_checkpoint_outbox.sql. Like the event outbox, a row is written by
-- trigger in the transaction that stores the checkpoint, so a recorded checkpoint is never
-- lost on its way to subscribers; the relay publishes it once every event up to its position
-- has been published.
CREATE TABLE checkpoint_outbox (
    checkpoint_id    TEXT PRIMARY KEY REFERENCES checkpoints (id),
    position         BIGINT NOT NULL,
    published_at_us  BIGINT
);
CREATE INDEX checkpoint_outbox_pending ON checkpoint_outbox (position) WHERE published_at_us IS NULL;

CREATE FUNCTION model_ledger_checkpoint_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO checkpoint_outbox (checkpoint_id, position) VALUES (NEW.id, NEW.position);
    RETURN NULL;
END $$;
CREATE TRIGGER checkpoints_outbox AFTER INSERT ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION model_ledger_checkpoint_outbox();

-- Checkpoints made before this migration are published too.
INSERT INTO checkpoint_outbox (checkpoint_id, position) SELECT id, position FROM checkpoints;
