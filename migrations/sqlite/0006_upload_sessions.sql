-- Open artifact upload sessions (see src/artifacts/mod.rs). They used to live in one process's
-- memory, so behind a load balancer a file sent to the other process found no session. Kept
-- here, every process sees the same sessions: which files arrived with which digest, how many
-- uploads are still streaming, and whether a commit has frozen the session. This is working
-- state, not history: rows are updated and deleted, and a committed session leaves nothing
-- behind (its manifest is in the CreateVersion event).
CREATE TABLE upload_sessions (
    id             TEXT PRIMARY KEY,
    model_name     TEXT NOT NULL,
    owner_issuer   TEXT NOT NULL,
    owner_subject  TEXT NOT NULL,
    store_name     TEXT NOT NULL,
    -- Uploads of this session still streaming; a commit waits for none.
    inflight       BIGINT NOT NULL DEFAULT 0 CHECK (inflight >= 0),
    -- 1 while a commit holds the session frozen.
    committing     INTEGER NOT NULL DEFAULT 0,
    created_at_us  BIGINT NOT NULL
);

-- One row per path: 'uploading' while its bytes stream (a second upload of the same path is
-- refused meanwhile), 'stored' with its size and digest once they are in the object store.
CREATE TABLE upload_session_files (
    session_id  TEXT NOT NULL REFERENCES upload_sessions (id) ON DELETE CASCADE,
    path        TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('uploading', 'stored')),
    size        BIGINT NOT NULL DEFAULT 0,
    sha256      TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (session_id, path)
);
