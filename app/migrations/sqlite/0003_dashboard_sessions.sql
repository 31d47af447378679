-- Sessions of the web dashboard (SQLite). The cookie carries a random token;
-- only its SHA-256 hash is stored. A session ends at `expires_at`, on sign
-- out, or as soon as the API key it was opened with is revoked.
CREATE TABLE dashboard_sessions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash  TEXT NOT NULL,
    key_id      INTEGER NOT NULL REFERENCES api_keys (id),
    csrf_token  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE UNIQUE INDEX dashboard_sessions_token_hash_key ON dashboard_sessions (token_hash);
CREATE INDEX dashboard_sessions_expires_at_idx ON dashboard_sessions (expires_at);
