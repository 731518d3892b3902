-- Signed checkpoints as webhook deliveries (`ledger.checkpoint.created`; see docs/webhooks.md).
-- Same result as migrations/postgres/0011_webhook_checkpoints.sql, whose header explains the
-- design: a fan-out marker on checkpoint_outbox, and a delivery row that names its checkpoint.
--
-- SQLite cannot drop a table constraint, so webhook_deliveries is rebuilt without its
-- UNIQUE (webhook_id, position) and the two partial unique indexes take its place. Nothing
-- references webhook_deliveries, so dropping the old table breaks no foreign key.
CREATE TABLE webhook_deliveries_v11 (
    id                  TEXT PRIMARY KEY,
    webhook_id          TEXT NOT NULL REFERENCES webhooks (id),
    position            BIGINT NOT NULL,
    event_name          TEXT NOT NULL,
    order_key           TEXT NOT NULL,
    payload             TEXT NOT NULL,
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
    checkpoint_id       TEXT REFERENCES checkpoints (id)
);
INSERT INTO webhook_deliveries_v11 (id, webhook_id, position, event_name, order_key, payload,
    status, attempts, next_attempt_at_us, first_attempt_at_us, lease_owner, lease_until_us,
    last_response_code, last_latency_ms, last_error, created_at_us, updated_at_us)
SELECT id, webhook_id, position, event_name, order_key, payload, status, attempts,
    next_attempt_at_us, first_attempt_at_us, lease_owner, lease_until_us, last_response_code,
    last_latency_ms, last_error, created_at_us, updated_at_us
FROM webhook_deliveries;
DROP TABLE webhook_deliveries;
ALTER TABLE webhook_deliveries_v11 RENAME TO webhook_deliveries;
-- In the lease's order, so it reads only as far as it leases (see the PostgreSQL migration).
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at_us, position) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_queue ON webhook_deliveries (webhook_id, order_key, position) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_history ON webhook_deliveries (webhook_id, created_at_us DESC, id DESC);
CREATE UNIQUE INDEX webhook_deliveries_one_per_event ON webhook_deliveries (webhook_id, position)
    WHERE checkpoint_id IS NULL;
CREATE UNIQUE INDEX webhook_deliveries_one_per_checkpoint ON webhook_deliveries (webhook_id, checkpoint_id)
    WHERE checkpoint_id IS NOT NULL;
CREATE INDEX webhook_deliveries_pending_events ON webhook_deliveries (webhook_id, position)
    WHERE status = 'pending' AND checkpoint_id IS NULL;

ALTER TABLE checkpoint_outbox ADD COLUMN webhooks_fanned_out_at_us BIGINT;
UPDATE checkpoint_outbox SET webhooks_fanned_out_at_us = 0;
CREATE INDEX checkpoint_outbox_webhooks_pending ON checkpoint_outbox (position)
    WHERE webhooks_fanned_out_at_us IS NULL;
