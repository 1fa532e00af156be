-- Snapshots of the read models at past points of the log (projections/snapshots.py). Each
-- snapshot is a schema of its own, ``snapshot_<16 hex digits>``, holding copies of the
-- projections' tables and one row in its ``_chronohub_snapshot`` table saying where it stands.

-- name: named
-- Every finished snapshot's schema (one being built is named ``snapshot_build_<hex>``).
SELECT nspname::text AS name
  FROM pg_namespace
 WHERE nspname ~ '^snapshot_[0-9a-f]{16}$'
 ORDER BY nspname;

-- name: columns
-- The shape of each of the live tables $1: its columns and their types, in order. Part of a
-- projection's version: a snapshot's copies are of the tables as they were.
SELECT c.relname::text AS name,
       string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', '
                  ORDER BY a.attnum) AS columns
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid
 WHERE n.nspname = 'public' AND c.relname = ANY($1::text[])
   AND a.attnum > 0 AND NOT a.attisdropped
 GROUP BY c.relname;

-- name: use
-- Held (shared) while a snapshot is copied from, for the transaction: a pruning never drops
-- a snapshot being read.
SELECT pg_advisory_xact_lock_shared(hashtextextended('chronohub-snapshot:' || $1, 0));

-- name: try_drop
-- Taken (exclusive) before a snapshot is dropped; false while someone reads it.
SELECT pg_try_advisory_xact_lock(hashtextextended('chronohub-snapshot:' || $1, 0));

-- name: exists
SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1);

-- name: take_lock
-- One snapshot taken at a time per database (several hub processes, the command line).
SELECT pg_try_advisory_lock(hashtextextended('chronohub-snapshot-taker', 0));

-- name: take_unlock
SELECT pg_advisory_unlock(hashtextextended('chronohub-snapshot-taker', 0));

-- name: head_position
SELECT coalesce(max(global_position), 0) FROM events;

-- name: recorded_at
SELECT recorded_at FROM events WHERE global_position = $1;
