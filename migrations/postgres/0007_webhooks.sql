-- Registry webhooks (issue #18; see src/webhooks/ and docs/webhooks.md). Same tables as
-- migrations/sqlite/0007_webhooks.sql.
--
-- `webhooks` holds MLflow 3's subscriptions. They are configuration, not registry history, so
-- rows are updated in place; a deleted webhook keeps its row (deleted_at_us set) so its delivery
-- history still names it. The secret is stored sealed (AES-256-GCM, src/webhooks/secrets.rs),
-- never in plain text.
CREATE TABLE webhooks (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    description    TEXT,
    url            TEXT NOT NULL,
    -- JSON array of event names (`model_version.created`, `ledger.…`).
    events         TEXT NOT NULL,
    secret_sealed  TEXT,
    -- After a secret is replaced, the old one still signs (beside the new one) until this time,
    -- so receivers can switch over without rejecting deliveries.
    previous_secret_sealed    TEXT,
    previous_secret_until_us  BIGINT,
    status         TEXT NOT NULL CHECK (status IN ('ACTIVE', 'DISABLED')),
    created_at_us  BIGINT NOT NULL,
    updated_at_us  BIGINT NOT NULL,
    deleted_at_us  BIGINT
);
CREATE INDEX webhooks_newest_first ON webhooks (created_at_us DESC, id DESC) WHERE deleted_at_us IS NULL;

-- One row per (webhook, committed event): written by the fan-out in the same transaction that
-- advances webhook_cursor, so an event is either fanned out to every matching subscription or
-- to none, and never twice (the unique key). Workers in any process lease due rows
-- (lease_owner / lease_until_us); a lease that expires (its process died) is taken over, so a
-- delivery can be sent again only under the same delivery id.
CREATE TABLE webhook_deliveries (
    id                  TEXT PRIMARY KEY,
    webhook_id          TEXT NOT NULL REFERENCES webhooks (id),
    position            BIGINT NOT NULL,
    event_name          TEXT NOT NULL,
    -- Deliveries of one webhook with the same key go out in position order (the model's stream).
    order_key           TEXT NOT NULL,
    -- The exact body that is signed and sent.
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
    UNIQUE (webhook_id, position)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at_us) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_queue ON webhook_deliveries (webhook_id, order_key, position) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_history ON webhook_deliveries (webhook_id, created_at_us DESC, id DESC);

-- How far the fan-out has read the event log. It starts at the head when this migration runs:
-- events committed before webhooks existed are not delivered to anyone.
CREATE TABLE webhook_cursor (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    position  BIGINT NOT NULL
);
INSERT INTO webhook_cursor (id, position) SELECT 1, COALESCE(MAX(position), 0) FROM events;
