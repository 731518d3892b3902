-- Transition requests (issue #17) for BI tools; the PostgreSQL view is
-- reporting.transition_requests (see migrations/postgres/0008_transition_request_views.sql).
-- `outcome` is `pending` until a final event decides the request.
CREATE VIEW reporting_transition_requests AS
SELECT json_extract(r.payload, '$.request_id')        AS request_id,
       r.position,
       r.model_name,
       r.stream_id,
       r.version,
       json_extract(r.payload, '$.to_stage')          AS to_stage,
       json_extract(r.payload, '$.comment')           AS comment,
       r.actor_subject                                AS requested_by,
       r.actor_issuer                                 AS requested_by_issuer,
       r.occurred_at                                  AS requested_at,
       json_extract(r.payload, '$.expires_at')        AS expires_at,
       json_extract(r.payload, '$.artifact_digest')   AS artifact_digest,
       json_extract(r.payload, '$.policy_set_digest') AS policy_set_digest,
       CASE d.event_type
           WHEN 'RequestApproved'  THEN 'approved'
           WHEN 'RequestRejected'  THEN 'rejected'
           WHEN 'RequestCancelled' THEN 'cancelled'
           WHEN 'RequestExpired'   THEN 'expired'
           WHEN 'RequestVoided'    THEN 'voided'
           ELSE 'pending'
       END                                            AS outcome,
       d.occurred_at                                  AS decided_at,
       d.actor_subject                                AS decided_by,
       d.actor_issuer                                 AS decided_by_issuer,
       CAST(round((julianday(d.occurred_at) - julianday(r.occurred_at)) * 86400) AS INTEGER)
                                                      AS decision_seconds
FROM reporting_events r
LEFT JOIN reporting_events d
       ON d.stream_id = r.stream_id
      AND json_extract(d.payload, '$.request_id') = json_extract(r.payload, '$.request_id')
      AND (d.event_type IN ('RequestRejected', 'RequestCancelled', 'RequestExpired', 'RequestVoided')
           OR (d.event_type = 'RequestApproved' AND json_extract(d.payload, '$.completes') = 1))
WHERE r.event_type = 'TransitionRequested';
