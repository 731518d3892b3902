-- One stored body per event instead of one per delivery (issue #18's throughput). Same result
-- as migrations/postgres/0012_webhook_payloads.sql, whose header explains why; SQLite has no
-- fill factor, so only the payload moves.
--
-- SQLite cannot drop a NOT NULL constraint, so webhook_deliveries is rebuilt (as in 0011) with
-- a nullable `payload` and the new `payload_key`, and its indexes are made again.
CREATE TABLE webhook_payloads (
    payload_key TEXT PRIMARY KEY,
    payload     TEXT NOT NULL
);
CREATE TABLE webhook_deliveries_v12 (
    id                  TEXT PRIMARY KEY,
    webhook_id          TEXT NOT NULL REFERENCES webhooks (id),
    position            BIGINT NOT NULL,
    event_name          TEXT NOT NULL,
    order_key           TEXT NOT NULL,
    payload             TEXT,
    status              TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts            BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_us  BIGINT NOT NULL,
    first_attempt_at_us BIGINT,
    lease_owner         TEXT,
    lease_until_us      BIGINT,
    last_response_code  INTEGER,
    last_latency_ms     BIGINT,
    last_error          TEXT,
    created_at_us       BIGINT NOT NULL,
    updated_at_us       BIGINT NOT NULL,
    checkpoint_id       TEXT REFERENCES checkpoints (id),
    -- No foreign key, as in PostgreSQL (see that migration).
    payload_key         TEXT,
    CHECK (payload IS NOT NULL OR payload_key IS NOT NULL)
);
INSERT INTO webhook_deliveries_v12 (id, webhook_id, position, event_name, order_key, payload,
    status, attempts, next_attempt_at_us, first_attempt_at_us, lease_owner, lease_until_us,
    last_response_code, last_latency_ms, last_error, created_at_us, updated_at_us, checkpoint_id)
SELECT id, webhook_id, position, event_name, order_key, payload, status, attempts,
    next_attempt_at_us, first_attempt_at_us, lease_owner, lease_until_us, last_response_code,
    last_latency_ms, last_error, created_at_us, updated_at_us, checkpoint_id
FROM webhook_deliveries;
DROP TABLE webhook_deliveries;
ALTER TABLE webhook_deliveries_v12 RENAME TO webhook_deliveries;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at_us, position) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_queue ON webhook_deliveries (webhook_id, order_key, position) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_history ON webhook_deliveries (webhook_id, created_at_us DESC, id DESC);
CREATE UNIQUE INDEX webhook_deliveries_one_per_event ON webhook_deliveries (webhook_id, position)
    WHERE checkpoint_id IS NULL;
CREATE UNIQUE INDEX webhook_deliveries_one_per_checkpoint ON webhook_deliveries (webhook_id, checkpoint_id)
    WHERE checkpoint_id IS NOT NULL;
CREATE INDEX webhook_deliveries_pending_events ON webhook_deliveries (webhook_id, position)
    WHERE status = 'pending' AND checkpoint_id IS NULL;
