-- A user's audit history at scale (issue 20 part 3): "GET /events?user=<name>&limit=100" read
-- every event of the user through the index on data (0004), then sorted them and kept 100.
-- In a large log each of those events is on a page of its own: at 10,000,000 events, a user's
-- 1,000 events meant 1,000 page reads (p50 1.4 s, against 67 ms at 1,000,000). Ordered by
-- position within a user id, this index lets history_about_* (hub/audit/audit.sql) read the
-- page's events only. Partial: only events whose data names a user_id pay for it on append.
CREATE INDEX events_user_position ON events ((data->>'user_id'), global_position)
    WHERE data ? 'user_id';
