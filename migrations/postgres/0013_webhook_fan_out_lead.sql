-- The fan-out's lead (issue #18's throughput; see src/webhooks/worker.rs and docs/webhooks.md).
-- One process at a time sends new events straight from the cursor and records each delivery
-- once, with its outcome; the lead is a lease on the cursor's row, renewed by its holder and
-- taken over by another process when it runs out (or at once, when its holder stops and gives
-- it up). Same columns in migrations/{postgres,sqlite}/0013_webhook_fan_out_lead.sql.
ALTER TABLE webhook_cursor ADD COLUMN leader_owner TEXT;
ALTER TABLE webhook_cursor ADD COLUMN leader_until_us BIGINT;
