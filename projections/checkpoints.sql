-- Checkpoints of asynchronous projections (projections/runner.py, projections/rebuild.py).

-- name: lock
-- One worker at a time per projection, for one batch (released at commit).
SELECT pg_try_advisory_xact_lock(hashtext('chronohub-projection:' || $1));

-- name: lock_wait
SELECT pg_advisory_xact_lock(hashtext('chronohub-projection:' || $1));

-- name: get
SELECT tx_id::text AS tx, position FROM projection_checkpoints WHERE name = $1;

-- name: ensure
INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING;

-- name: set
UPDATE projection_checkpoints
   SET tx_id = $2::text::xid8, position = $3, updated_at = clock_timestamp()
 WHERE name = $1;

-- name: count_events
SELECT count(*) FROM events WHERE event_type = ANY($1::text[]);

-- name: checkpoint_at_position
-- The checkpoint of the event at global position $1, if a fenced reader can see it.
SELECT e.tx_id::text AS tx, e.global_position AS position, e.recorded_at
  FROM events e
 WHERE e.global_position = $1
   AND e.tx_id < pg_snapshot_xmin(pg_current_snapshot());

-- name: checkpoint_at_time
-- The last event, in the readers' (tx, position) order, recorded at or before $1, among
-- those a fenced reader can see.
SELECT e.tx_id::text AS tx, e.global_position AS position, e.recorded_at
  FROM events e
 WHERE e.recorded_at <= $1
   AND e.tx_id < pg_snapshot_xmin(pg_current_snapshot())
 ORDER BY e.tx_id DESC, e.global_position DESC
 LIMIT 1;

-- name: read_models_changed
-- A rebuild swapped a projection's tables (no event says so): every hub process's token and
-- read caches must forget what they read from them. One numbered 'chronohub_auth'
-- notification of the kind that empties both, sent at the commit
-- (migrations/0022_read_cache.sql); taken last in the swap's transaction, after its table
-- locks, as the triggers take the same ordering lock at their commits.
SELECT chronohub_notify_changed('auth');
