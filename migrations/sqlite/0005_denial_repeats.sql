-- Repeated identical denials are coalesced (see src/service/denials.rs): the first one is a row
-- in access_decisions, written as it happens; the repeats within its window are counted in
-- memory and appended here every few seconds, one row per flush. Both tables stay append-only.
CREATE TABLE access_decision_repeats (
    decision_id  TEXT NOT NULL REFERENCES access_decisions (id),
    repeats      BIGINT NOT NULL CHECK (repeats > 0),
    last_at_us   BIGINT NOT NULL
);
CREATE INDEX access_decision_repeats_by_decision ON access_decision_repeats (decision_id);
CREATE TRIGGER access_decision_repeats_no_update BEFORE UPDATE ON access_decision_repeats
BEGIN SELECT RAISE(ABORT, 'model-ledger: UPDATE on access_decision_repeats is not allowed (append-only)'); END;
CREATE TRIGGER access_decision_repeats_no_delete BEFORE DELETE ON access_decision_repeats
BEGIN SELECT RAISE(ABORT, 'model-ledger: DELETE on access_decision_repeats is not allowed (append-only)'); END;

DROP VIEW reporting_denials;
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
       d.request_id,
       1 + COALESCE((SELECT sum(r.repeats) FROM access_decision_repeats r WHERE r.decision_id = d.id), 0) AS repeats,
       (SELECT strftime('%Y-%m-%dT%H:%M:%fZ', max(r.last_at_us) / 1e6, 'unixepoch') FROM access_decision_repeats r WHERE r.decision_id = d.id) AS last_at
FROM access_decisions d;
