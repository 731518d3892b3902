-- Compliance reporting (SQLite): signed checkpoints of the chain head, and the reporting views.
-- Same tables as migrations/postgres/0002_reporting.sql. SQLite has no schemas or roles, so the
-- views are named `reporting_<view>` instead of `reporting.<view>`, JSON stays text (read it with
-- json_extract), times are RFC 3339 text in UTC, and read-only access is the file's permissions
-- (or opening it with `?mode=ro`).

CREATE TABLE checkpoints (
    id             TEXT PRIMARY KEY,
    position       BIGINT NOT NULL,
    hash           TEXT NOT NULL,
    created_at_us  BIGINT NOT NULL,
    origin         TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    note           TEXT NOT NULL
);
CREATE INDEX checkpoints_by_position ON checkpoints (position);
CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'model-ledger: UPDATE on checkpoints is not allowed (append-only)'); END;
CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'model-ledger: DELETE on checkpoints is not allowed (append-only)'); END;

CREATE VIEW reporting_events AS
SELECT e.position,
       e.event_id,
       e.stream_id,
       e.stream_version,
       e.model_name,
       e.event_type,
       e.version,
       e.payload,
       strftime('%Y-%m-%dT%H:%M:%fZ', e.occurred_at_us / 1e6, 'unixepoch') AS occurred_at,
       e.actor_subject,
       e.actor_issuer,
       e.actor_display_name,
       e.request_id,
       e.correlation_id,
       e.decision,
       COALESCE(json_extract(e.decision, '$.policy_ids'), '[]') AS policy_ids,
       json_extract(e.decision, '$.policy_set_digest')        AS policy_set_digest,
       e.prev_hash,
       e.hash
FROM events e;

CREATE VIEW reporting_stage_transitions AS
SELECT e.position,
       e.occurred_at,
       e.model_name,
       e.stream_id,
       e.version,
       json_extract(e.payload, '$.from')        AS from_stage,
       json_extract(e.payload, '$.to')          AS to_stage,
       json_extract(e.payload, '$.reason.kind') AS reason,
       json_extract(e.payload, '$.comment')     AS comment,
       e.actor_subject                          AS promoted_by,
       e.actor_issuer                           AS promoted_by_issuer,
       c.actor_subject                          AS registered_by,
       c.actor_issuer                           AS registered_by_issuer,
       e.policy_ids,
       e.policy_set_digest,
       json_extract(c.payload, '$.artifact.digest') AS artifact_digest
FROM reporting_events e
LEFT JOIN reporting_events c
       ON c.stream_id = e.stream_id AND c.version = e.version AND c.event_type = 'VersionCreated'
WHERE e.event_type = 'StageTransitioned';

CREATE VIEW reporting_promotions AS
SELECT t.*,
       (t.promoted_by = t.registered_by AND t.promoted_by_issuer = t.registered_by_issuer) AS same_person
FROM reporting_stage_transitions t
WHERE t.reason = 'requested' AND t.to_stage IN ('Staging', 'Production');

CREATE VIEW reporting_verifications AS
SELECT e.position, e.occurred_at, e.model_name, e.stream_id, e.version,
       e.event_type = 'ArtifactVerified' AS verified,
       json_extract(e.payload, '$.digest') AS digest,
       json_extract(e.payload, '$.failures') AS failures,
       e.actor_subject
FROM reporting_events e
WHERE e.event_type IN ('ArtifactVerified', 'ArtifactVerificationFailed');

CREATE VIEW reporting_denials AS
SELECT d.id,
       strftime('%Y-%m-%dT%H:%M:%fZ', d.occurred_at_us / 1e6, 'unixepoch') AS occurred_at,
       d.actor_subject,
       d.actor_issuer,
       d.action,
       d.model_name,
       d.version,
       d.decision,
       COALESCE(json_extract(d.decision, '$.policy_ids'), '[]') AS policy_ids,
       json_extract(d.decision, '$.reason')            AS reason,
       json_extract(d.decision, '$.policy_set_digest') AS policy_set_digest,
       d.request_id
FROM access_decisions d;

CREATE VIEW reporting_current_stages AS
SELECT m.name AS model_name, v.version, v.stage, v.verification_status,
       v.artifact_digest, v.created_by_subject AS registered_by,
       strftime('%Y-%m-%dT%H:%M:%fZ', v.updated_at_us / 1e6, 'unixepoch') AS updated_at
FROM model_versions v JOIN registered_models m ON m.model_id = v.model_id
WHERE v.stage <> 'None';

CREATE VIEW reporting_checkpoints AS
SELECT position, hash, strftime('%Y-%m-%dT%H:%M:%fZ', created_at_us / 1e6, 'unixepoch') AS created_at,
       origin, key_id, note
FROM checkpoints;
