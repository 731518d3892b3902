-- Event log, outbox and projections (SQLite). Same tables as migrations/postgres/0001_init.sql.

-- The event log. One row per event; position is the gapless global order (assigned under the
-- chain head lock, never from a sequence), (stream_id, stream_version) the per-model order.
CREATE TABLE events (
    position            BIGINT PRIMARY KEY,
    event_id            TEXT NOT NULL UNIQUE,
    stream_id           TEXT NOT NULL,
    stream_version      BIGINT NOT NULL,
    model_name          TEXT NOT NULL,
    event_type          TEXT NOT NULL,
    schema_version      INTEGER NOT NULL,
    payload             TEXT NOT NULL,
    occurred_at_us      BIGINT NOT NULL,
    actor_subject       TEXT NOT NULL,
    actor_issuer        TEXT NOT NULL,
    actor_display_name  TEXT,
    request_id          TEXT,
    correlation_id      TEXT,
    decision            TEXT,
    version             BIGINT,
    prev_hash           TEXT NOT NULL,
    hash                TEXT NOT NULL,
    UNIQUE (stream_id, stream_version)
);
CREATE INDEX events_by_model_name ON events (model_name, position);
CREATE INDEX events_by_type ON events (event_type, position);
CREATE INDEX events_by_time ON events (occurred_at_us);

-- The newest position and hash. Every append locks this one row, which is what makes positions
-- gapless and commit-ordered and lets each event link to the previous hash.
CREATE TABLE chain_head (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    position  BIGINT NOT NULL,
    hash      TEXT NOT NULL
);
INSERT INTO chain_head (id, position, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- One row per event, written by trigger in the append transaction; the relay marks it published.
CREATE TABLE outbox (
    position         BIGINT PRIMARY KEY REFERENCES events (position),
    event_id         TEXT NOT NULL,
    created_at_us    BIGINT NOT NULL,
    published_at_us  BIGINT,
    attempts         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outbox_pending ON outbox (position) WHERE published_at_us IS NULL;

-- Responses to requests made with an Idempotency-Key, stored with the events they produced.
CREATE TABLE idempotency_keys (
    scope          TEXT NOT NULL,
    key            TEXT NOT NULL,
    request_hash   TEXT NOT NULL,
    status         INTEGER NOT NULL,
    body           TEXT NOT NULL,
    created_at_us  BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);

-- Denied attempts: security events, append-only like the log.
CREATE TABLE access_decisions (
    id               TEXT PRIMARY KEY,
    occurred_at_us   BIGINT NOT NULL,
    actor_subject    TEXT NOT NULL,
    actor_issuer     TEXT NOT NULL,
    action           TEXT NOT NULL,
    model_name       TEXT NOT NULL,
    version          BIGINT,
    decision         TEXT NOT NULL,
    request_id       TEXT
);
CREATE INDEX access_decisions_by_time ON access_decisions (occurred_at_us);

-- Projections: current state, rewritten in the append transaction, rebuildable from events.
CREATE TABLE model_state (
    model_id        TEXT PRIMARY KEY,
    stream_version  BIGINT NOT NULL,
    state           TEXT NOT NULL
);

CREATE TABLE registered_models (
    model_id            TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    description         TEXT NOT NULL,
    tags                TEXT NOT NULL,
    aliases             TEXT NOT NULL,
    created_at_us       BIGINT NOT NULL,
    updated_at_us       BIGINT NOT NULL,
    created_by_subject  TEXT NOT NULL,
    created_by_issuer   TEXT NOT NULL,
    last_version        BIGINT NOT NULL,
    stream_version      BIGINT NOT NULL
);
CREATE UNIQUE INDEX registered_models_name ON registered_models (name);

CREATE TABLE model_tags (
    model_id  TEXT NOT NULL,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (model_id, key)
);

CREATE TABLE model_versions (
    model_id             TEXT NOT NULL,
    version              BIGINT NOT NULL,
    source               TEXT NOT NULL,
    run_id               TEXT,
    description          TEXT NOT NULL,
    stage                TEXT NOT NULL,
    tags                 TEXT NOT NULL,
    metrics              TEXT NOT NULL,
    signature            TEXT,
    input_example        TEXT,
    artifact             TEXT,
    artifact_digest      TEXT,
    verification_status  TEXT NOT NULL,
    verification         TEXT NOT NULL,
    aliases              TEXT NOT NULL,
    created_at_us        BIGINT NOT NULL,
    updated_at_us        BIGINT NOT NULL,
    created_by_subject   TEXT NOT NULL,
    created_by_issuer    TEXT NOT NULL,
    PRIMARY KEY (model_id, version)
);
CREATE INDEX model_versions_by_stage ON model_versions (model_id, stage, version);
CREATE INDEX model_versions_by_run ON model_versions (run_id);

CREATE TABLE version_tags (
    model_id  TEXT NOT NULL,
    version   BIGINT NOT NULL,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (model_id, version, key)
);

CREATE TABLE aliases (
    model_id  TEXT NOT NULL,
    alias     TEXT NOT NULL,
    version   BIGINT NOT NULL,
    PRIMARY KEY (model_id, alias)
);

-- Which version is in which stage now, for people and BI tools.
CREATE VIEW current_stages AS
SELECT m.name AS model_name, v.version, v.stage, v.verification_status, v.updated_at_us
FROM model_versions v JOIN registered_models m ON m.model_id = v.model_id
WHERE v.stage <> 'None';

-- Immutability: the log and the access-decision log reject UPDATE and DELETE (SQLite has no
-- TRUNCATE; a DELETE without WHERE fires the same trigger).
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'model-ledger: UPDATE on events is not allowed (append-only)'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'model-ledger: DELETE on events is not allowed (append-only)'); END;
CREATE TRIGGER access_decisions_no_update BEFORE UPDATE ON access_decisions
BEGIN SELECT RAISE(ABORT, 'model-ledger: UPDATE on access_decisions is not allowed (append-only)'); END;
CREATE TRIGGER access_decisions_no_delete BEFORE DELETE ON access_decisions
BEGIN SELECT RAISE(ABORT, 'model-ledger: DELETE on access_decisions is not allowed (append-only)'); END;

-- Each event gets its outbox row in the same transaction.
CREATE TRIGGER events_outbox AFTER INSERT ON events
BEGIN
    INSERT INTO outbox (position, event_id, created_at_us) VALUES (NEW.position, NEW.event_id, NEW.occurred_at_us);
END;
