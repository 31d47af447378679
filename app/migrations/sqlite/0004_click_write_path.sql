-- The same indexes as on PostgreSQL: no index on the event type alone, and
-- the user index only over events that have a user. The foreign key from
-- events to links stays: SQLite checks it with one primary-key lookup, and
-- removing it would mean rebuilding the table.
DROP INDEX IF EXISTS events_event_type_idx;
DROP INDEX IF EXISTS events_user_id_idx;
CREATE INDEX events_user_id_idx ON events (user_id) WHERE user_id IS NOT NULL;
