-- Transition requests (issue #17) for BI tools: one row per request with its outcome, who
-- decided it and when. Built from the log like every reporting view, so it is always current
-- and never needs rebuilding. `outcome` is `pending` until a final event: the approval that
-- completed the request, a rejection, a cancellation, an expiry or a void.
CREATE OR REPLACE VIEW reporting.transition_requests AS
SELECT r.payload ->> 'request_id'               AS request_id,
       r.position,
       r.model_name,
       r.stream_id,
       r.version,
       r.payload ->> 'to_stage'                 AS to_stage,
       r.payload ->> 'comment'                  AS comment,
       r.actor_subject                          AS requested_by,
       r.actor_issuer                           AS requested_by_issuer,
       r.occurred_at                            AS requested_at,
       (r.payload ->> 'expires_at')::timestamptz AS expires_at,
       r.payload ->> 'artifact_digest'          AS artifact_digest,
       r.payload ->> 'policy_set_digest'        AS policy_set_digest,
       CASE d.event_type
           WHEN 'RequestApproved'  THEN 'approved'
           WHEN 'RequestRejected'  THEN 'rejected'
           WHEN 'RequestCancelled' THEN 'cancelled'
           WHEN 'RequestExpired'   THEN 'expired'
           WHEN 'RequestVoided'    THEN 'voided'
           ELSE 'pending'
       END                                      AS outcome,
       d.occurred_at                            AS decided_at,
       d.actor_subject                          AS decided_by,
       d.actor_issuer                           AS decided_by_issuer,
       EXTRACT(EPOCH FROM (d.occurred_at - r.occurred_at))::bigint AS decision_seconds
FROM reporting.events r
LEFT JOIN reporting.events d
       ON d.stream_id = r.stream_id
      AND d.payload ->> 'request_id' = r.payload ->> 'request_id'
      AND (d.event_type IN ('RequestRejected', 'RequestCancelled', 'RequestExpired', 'RequestVoided')
           OR (d.event_type = 'RequestApproved' AND (d.payload ->> 'completes')::boolean))
WHERE r.event_type = 'TransitionRequested';

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'model_ledger_reporting') THEN
        GRANT SELECT ON reporting.transition_requests TO model_ledger_reporting;
    END IF;
END
$$;
