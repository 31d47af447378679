-- PostgreSQL drops the foreign key from events to users in this migration.
-- SQLite keeps it: dropping a constraint there means rebuilding the table,
-- and the key costs one primary-key lookup only for events that carry a user.
SELECT 1;
