-- Repeated identical denials are coalesced (see src/service/denials.rs): the first one is a row
-- in access_decisions, written as it happens; the repeats within its window are counted in
-- memory and appended here every few seconds, one row per flush. Both tables stay append-only,
-- so a refusal's record can be added to but never rewritten, and a caller cannot make the
-- server write one row per refused request.
CREATE TABLE access_decision_repeats (
    decision_id  TEXT NOT NULL REFERENCES access_decisions (id),
    repeats      BIGINT NOT NULL CHECK (repeats > 0),
    last_at_us   BIGINT NOT NULL
);
CREATE INDEX access_decision_repeats_by_decision ON access_decision_repeats (decision_id);
CREATE TRIGGER access_decision_repeats_append_only BEFORE UPDATE OR DELETE ON access_decision_repeats
    FOR EACH ROW EXECUTE FUNCTION model_ledger_append_only();
CREATE TRIGGER access_decision_repeats_no_truncate BEFORE TRUNCATE ON access_decision_repeats
    FOR EACH STATEMENT EXECUTE FUNCTION model_ledger_append_only();

-- The reporting view gains the totals (appended columns: CREATE OR REPLACE keeps the others).
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
       d.request_id,
       1 + COALESCE((SELECT sum(r.repeats) FROM access_decision_repeats r WHERE r.decision_id = d.id), 0)::bigint AS repeats,
       (SELECT to_timestamp(max(r.last_at_us) / 1e6) FROM access_decision_repeats r WHERE r.decision_id = d.id) AS last_at
FROM access_decisions d;
