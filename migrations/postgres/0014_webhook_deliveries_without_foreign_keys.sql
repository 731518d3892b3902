-- The fan-out writes thousands of delivery rows a second (issue #18's throughput), and each
-- foreign key costs every inserted row a trigger and a lookup with a row lock on the row it
-- points at: in a 200,000-row insert of delivered rows the two checks took about a third of
-- the time (docs/performance.md, 2026-12-07 afternoon). Nothing they guarded can happen: a
-- delivery's webhook and checkpoint are read by the transaction that writes the delivery, and
-- neither table ever loses a row (a webhook is deleted by setting deleted_at_us; checkpoints
-- are permanent). SQLite keeps both keys: the embedded store writes far less, and dropping a
-- key there means rebuilding the table.
ALTER TABLE webhook_deliveries DROP CONSTRAINT IF EXISTS webhook_deliveries_webhook_id_fkey;
ALTER TABLE webhook_deliveries DROP CONSTRAINT IF EXISTS webhook_deliveries_checkpoint_id_fkey;
