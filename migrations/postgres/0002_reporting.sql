-- Compliance reporting (PostgreSQL): signed checkpoints of the chain head, and read-only views in
-- schema `reporting` for BI tools, readable by the NOLOGIN role `model_ledger_reporting`.
-- Same tables as migrations/sqlite/0002_reporting.sql; the views there are `reporting_*`.

-- Signed (position, head hash) pairs: what `audit verify --checkpoint` checks truncation against.
-- Append-only like the log.
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
CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION model_ledger_append_only();

CREATE SCHEMA IF NOT EXISTS reporting;

-- Every event with its JSON decoded and its time as a timestamp.
CREATE OR REPLACE VIEW reporting.events AS
SELECT e.position,
       e.event_id,
       e.stream_id,
       e.stream_version,
       e.model_name,
       e.event_type,
       e.version,
       e.payload::jsonb                                   AS payload,
       to_timestamp(e.occurred_at_us / 1e6)               AS occurred_at,
       e.actor_subject,
       e.actor_issuer,
       e.actor_display_name,
       e.request_id,
       e.correlation_id,
       e.decision::jsonb                                  AS decision,
       COALESCE(e.decision::jsonb -> 'policy_ids', '[]'::jsonb) AS policy_ids,
       e.decision::jsonb ->> 'policy_set_digest'          AS policy_set_digest,
       e.prev_hash,
       e.hash
FROM events e;

-- Every stage change, with why it happened (`requested`, `archived_by_promotion`, `rollback`,
-- `rolled_back`) and who registered the version (separation-of-duties evidence).
CREATE OR REPLACE VIEW reporting.stage_transitions AS
SELECT e.position,
       e.occurred_at,
       e.model_name,
       e.stream_id,
       e.version,
       e.payload ->> 'from'               AS from_stage,
       e.payload ->> 'to'                 AS to_stage,
       e.payload -> 'reason' ->> 'kind'   AS reason,
       e.payload ->> 'comment'            AS comment,
       e.actor_subject                    AS promoted_by,
       e.actor_issuer                     AS promoted_by_issuer,
       c.actor_subject                    AS registered_by,
       c.actor_issuer                     AS registered_by_issuer,
       e.policy_ids,
       e.policy_set_digest,
       c.payload -> 'artifact' ->> 'digest' AS artifact_digest
FROM reporting.events e
LEFT JOIN reporting.events c
       ON c.stream_id = e.stream_id AND c.version = e.version AND c.event_type = 'VersionCreated'
WHERE e.event_type = 'StageTransitioned';

-- Requested moves into Staging or Production: the promotions an auditor asks about.
CREATE OR REPLACE VIEW reporting.promotions AS
SELECT t.*,
       (t.promoted_by = t.registered_by AND t.promoted_by_issuer = t.registered_by_issuer) AS same_person
FROM reporting.stage_transitions t
WHERE t.reason = 'requested' AND t.to_stage IN ('Staging', 'Production');

-- Artifact verifications and failures, in order.
CREATE OR REPLACE VIEW reporting.verifications AS
SELECT e.position, e.occurred_at, e.model_name, e.stream_id, e.version,
       e.event_type = 'ArtifactVerified' AS verified,
       e.payload ->> 'digest' AS digest,
       e.payload -> 'failures' AS failures,
       e.actor_subject
FROM reporting.events e
WHERE e.event_type IN ('ArtifactVerified', 'ArtifactVerificationFailed');

-- Refused requests from the access-decision log.
CREATE OR REPLACE VIEW reporting.denials AS
SELECT d.id,
       to_timestamp(d.occurred_at_us / 1e6)        AS occurred_at,
       d.actor_subject,
       d.actor_issuer,
       d.action,
       d.model_name,
       d.version,
       d.decision::jsonb                           AS decision,
       COALESCE(d.decision::jsonb -> 'policy_ids', '[]'::jsonb) AS policy_ids,
       d.decision::jsonb ->> 'reason'              AS reason,
       d.decision::jsonb ->> 'policy_set_digest'   AS policy_set_digest,
       d.request_id
FROM access_decisions d;

-- What is in each stage now (from the projections).
CREATE OR REPLACE VIEW reporting.current_stages AS
SELECT m.name AS model_name, v.version, v.stage, v.verification_status,
       v.artifact_digest, v.created_by_subject AS registered_by,
       to_timestamp(v.updated_at_us / 1e6) AS updated_at
FROM model_versions v JOIN registered_models m ON m.model_id = v.model_id
WHERE v.stage <> 'None';

CREATE OR REPLACE VIEW reporting.checkpoints AS
SELECT position, hash, to_timestamp(created_at_us / 1e6) AS created_at, origin, key_id, note
FROM checkpoints;

-- The read-only role. Roles are cluster-wide, so creating it is idempotent and tolerates a
-- concurrent creator; a migrating user without CREATEROLE gets a notice instead of a failure
-- (an administrator can then create the role and re-run the GRANTs below by hand).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'model_ledger_reporting') THEN
        BEGIN
            CREATE ROLE model_ledger_reporting NOLOGIN;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'model-ledger: cannot create role model_ledger_reporting; create it and grant USAGE on schema reporting and SELECT on its views';
        END;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'model_ledger_reporting') THEN
        GRANT USAGE ON SCHEMA reporting TO model_ledger_reporting;
        GRANT SELECT ON ALL TABLES IN SCHEMA reporting TO model_ledger_reporting;
    END IF;
END $$;
