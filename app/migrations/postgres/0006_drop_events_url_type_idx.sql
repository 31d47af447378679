-- no-transaction
-- Replaced by events_by_link_idx (migration 0005).
DROP INDEX CONCURRENTLY IF EXISTS events_url_id_idx;
