-- Signed checkpoints as webhook deliveries (`ledger.checkpoint.created`; see docs/webhooks.md).
-- Same result as migrations/sqlite/0011_webhook_checkpoints.sql.
--
-- Checkpoints are not events: they have no position of their own (a checkpoint vouches for the
-- chain up to an event's position, and several may vouch for the same one), so they cannot use
-- the event fan-out's cursor or its one-delivery-per-(webhook, position) key. Instead:
--
-- * `checkpoint_outbox` (one row per checkpoint, written by trigger in the transaction that
--   stores the checkpoint) gets a fan-out marker. The fan-out sets it with a compare-and-set
--   (`… WHERE webhooks_fanned_out_at_us IS NULL`) in the transaction that queues the
--   checkpoint's deliveries, so each checkpoint is fanned out once across every process.
-- * A delivery row names the checkpoint it carries (`checkpoint_id`); event deliveries keep
--   their (webhook, position) key and checkpoint deliveries get (webhook, checkpoint), both as
--   partial unique indexes in place of the table's old UNIQUE (webhook_id, position).
ALTER TABLE webhook_deliveries ADD COLUMN checkpoint_id TEXT REFERENCES checkpoints (id);
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_webhook_id_position_key;
CREATE UNIQUE INDEX webhook_deliveries_one_per_event ON webhook_deliveries (webhook_id, position)
    WHERE checkpoint_id IS NULL;
CREATE UNIQUE INDEX webhook_deliveries_one_per_checkpoint ON webhook_deliveries (webhook_id, checkpoint_id)
    WHERE checkpoint_id IS NOT NULL;
-- A checkpoint delivery waits for the webhook's pending event deliveries at or before its
-- position (any model). This index serves that check alone: its predicate names
-- checkpoint_id, which the per-model ordering check does not, so the planner cannot pick it
-- there. (A plain (webhook_id, position) index on pending rows was tried first: with stale
-- statistics on a fast-growing queue the planner used it for the per-model check too, and each
-- lease became a scan of the webhook's whole backlog, seconds at 50,000 pending rows.)
CREATE INDEX webhook_deliveries_pending_events ON webhook_deliveries (webhook_id, position)
    WHERE status = 'pending' AND checkpoint_id IS NULL;

-- The lease orders due rows by (next_attempt_at_us, position) and stops after the first free
-- slots' worth of queue heads; with an index on next_attempt_at_us alone every row of one
-- fan-out batch (they share next_attempt_at_us) had to be read and checked first, so one lease
-- cost 7.6 s at 400,000 pending rows (EXPLAIN ANALYZE; 13 ms with this index).
DROP INDEX webhook_deliveries_due;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at_us, position)
    WHERE status = 'pending';

ALTER TABLE checkpoint_outbox ADD COLUMN webhooks_fanned_out_at_us BIGINT;
-- Checkpoints made before this migration could not have been subscribed to: nobody is owed them.
UPDATE checkpoint_outbox SET webhooks_fanned_out_at_us = 0;
CREATE INDEX checkpoint_outbox_webhooks_pending ON checkpoint_outbox (position)
    WHERE webhooks_fanned_out_at_us IS NULL;
