-- Users, links and their event history (SQLite, the embedded default).
CREATE TABLE users (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    username    TEXT NOT NULL,
    email       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    deleted_at  TEXT
);
CREATE UNIQUE INDEX users_username_key ON users (username) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX users_email_key ON users (email) WHERE deleted_at IS NULL;

CREATE TABLE links (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id          INTEGER REFERENCES users (id),
    short_code       TEXT NOT NULL,
    original_url     TEXT NOT NULL,
    title            TEXT,
    is_active        BOOLEAN NOT NULL DEFAULT TRUE,
    redirect_status  INTEGER NOT NULL DEFAULT 302,
    expires_at       TEXT,
    max_visits       INTEGER,
    click_count      INTEGER NOT NULL DEFAULT 0,
    managed_by       TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    deleted_at       TEXT
);
CREATE UNIQUE INDEX links_short_code_key ON links (short_code) WHERE deleted_at IS NULL;
CREATE INDEX links_user_id_idx ON links (user_id);

CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    url_id      INTEGER NOT NULL REFERENCES links (id),
    user_id     INTEGER REFERENCES users (id),
    event_type  TEXT NOT NULL,
    timestamp   TEXT NOT NULL,
    details     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_url_id_idx ON events (url_id, event_type);
CREATE INDEX events_user_id_idx ON events (user_id);
CREATE INDEX events_event_type_idx ON events (event_type);
