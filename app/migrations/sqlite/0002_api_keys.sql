-- API keys (SQLite). Only a SHA-256 hash of each key is stored; `prefix` is
-- the key's public start, for listing and for finding the candidate rows.
CREATE TABLE api_keys (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL,
    prefix      TEXT NOT NULL,
    key_hash    TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);
CREATE UNIQUE INDEX api_keys_key_hash_key ON api_keys (key_hash);
CREATE INDEX api_keys_prefix_idx ON api_keys (prefix);
