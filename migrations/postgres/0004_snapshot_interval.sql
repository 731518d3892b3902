-- A model's snapshot (`state`) is rewritten every few events instead of on every one: it holds
-- every version, so rewriting it made each write cost as much as the model is large. The
-- snapshot is as of `snapshot_version`; loading a model folds its events after that onto it.
-- `stream_version` is still updated on every append (it carries the optimistic check).
ALTER TABLE model_state ADD COLUMN snapshot_version BIGINT NOT NULL DEFAULT 0;
UPDATE model_state SET snapshot_version = stream_version;
