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
