-- The same index as on PostgreSQL: events of a link by url_id alone.
CREATE INDEX IF NOT EXISTS events_by_link_idx ON events (url_id);
