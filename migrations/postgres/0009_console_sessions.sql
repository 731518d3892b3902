-- Web console sign-ins (see src/console/session.rs). Kept in the database, not in one
-- process's memory, because several processes behind a round-robin balancer serve the same
-- browser: the next page may land on the other one. The cookie carries a random id; only its
-- SHA-256 is stored, so a leaked table does not hand out live sessions. Working state, not
-- history: rows are deleted at sign-out and once expired.
CREATE TABLE console_sessions (
    id_sha256      TEXT PRIMARY KEY,
    -- Sent back with every form and htmx request; a request without it changes nothing.
    csrf_token     TEXT NOT NULL,
    -- The signed-in identity as JSON: subject, issuer, display name, groups.
    principal      TEXT NOT NULL,
    created_at_us  BIGINT NOT NULL,
    expires_at_us  BIGINT NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at_us);
