-- Clicks are the one write that follows the redirect rate, so every index and
-- trigger on events costs once per click.
--
-- The foreign key from events to links fired a lookup and a row lock on links
-- for every click. Links are never removed (deleting one only sets deleted_at),
-- every click comes from a link the redirect just resolved, and imports and
-- POST /events check that the link exists, so the key guarded nothing.
ALTER TABLE events DROP CONSTRAINT IF EXISTS events_url_id_fkey;

-- No query filters on the event type alone: listings read by id and the
-- statistics by (url_id, event_type), which events_url_id_idx serves.
DROP INDEX IF EXISTS events_event_type_idx;

-- Clicks carry no user; only the events that have one need indexing.
DROP INDEX IF EXISTS events_user_id_idx;
CREATE INDEX events_user_id_idx ON events (user_id) WHERE user_id IS NOT NULL;
