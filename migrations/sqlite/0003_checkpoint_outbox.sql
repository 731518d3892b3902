-- Signed checkpoints are published to NATS with the events (SQLite). Same table as
-- migrations/postgres/0003_checkpoint_outbox.sql: a row per checkpoint, written by trigger in
-- the transaction that stores it; the relay publishes it once every event up to its position
-- has been published.
CREATE TABLE checkpoint_outbox (
    checkpoint_id    TEXT PRIMARY KEY REFERENCES checkpoints (id),
    position         BIGINT NOT NULL,
    published_at_us  BIGINT
);
CREATE INDEX checkpoint_outbox_pending ON checkpoint_outbox (position) WHERE published_at_us IS NULL;

CREATE TRIGGER checkpoints_outbox AFTER INSERT ON checkpoints
BEGIN
    INSERT INTO checkpoint_outbox (checkpoint_id, position) VALUES (NEW.id, NEW.position);
END;

INSERT INTO checkpoint_outbox (checkpoint_id, position) SELECT id, position FROM checkpoints;
