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
-- The shape of each of the live tables $1: its columns in order (type, NOT NULL, default),
-- its constraints and its indexes. Part of a projection's version: a snapshot's copies are of
-- the tables as they were, and a default or a constraint decides rows as code does.
SELECT c.relname::text AS name,
       (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                          || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
                          || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), ''),
                          ', ' ORDER BY a.attnum)
          FROM pg_attribute a
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
       (SELECT string_agg(pg_get_constraintdef(k.oid), '; ' ORDER BY pg_get_constraintdef(k.oid))
          FROM pg_constraint k
         WHERE k.conrelid = c.oid) AS constraints,
       -- An index's definition names its table's schema: only the live one is read here.
       (SELECT string_agg(pg_get_indexdef(i.indexrelid), '; '
                          ORDER BY pg_get_indexdef(i.indexrelid))
          FROM pg_index i
         WHERE i.indrelid = c.oid) AS indexes
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relname = ANY($1::text[]) AND c.relkind IN ('r', 'p');

-- name: use
-- Held (shared) by the session while a snapshot is copied from, a table per transaction (one
-- long transaction would hold back every fenced reader): a pruning never drops a snapshot
-- being read. Released by ``unuse``.
SELECT pg_advisory_lock_shared(hashtextextended('chronohub-snapshot:' || $1, 0));

-- name: unuse
SELECT pg_advisory_unlock_shared(hashtextextended('chronohub-snapshot:' || $1, 0));

-- name: try_drop
-- Taken (exclusive) before a snapshot is dropped; false while someone reads it.
SELECT pg_try_advisory_xact_lock(hashtextextended('chronohub-snapshot:' || $1, 0));

-- name: drop_timeout
-- A drop waits at most this long for its exclusive lock (behind a pg_dump, say): time travel
-- would queue behind a pending drop's lock. The drop is skipped; the next pruning tries again.
SET LOCAL lock_timeout = '2s';

-- name: exists
SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1);

-- name: take_lock
-- One snapshot taken at a time per database (several hub processes, the command line).
SELECT pg_try_advisory_lock(hashtextextended('chronohub-snapshot-taker', 0));

-- name: take_unlock
SELECT pg_advisory_unlock(hashtextextended('chronohub-snapshot-taker', 0));

-- name: head_position
SELECT coalesce(max(global_position), 0) FROM events;

-- name: at_checkpoint
-- The event at a snapshot's checkpoint: its time, and its id (kept in the snapshot, and
-- checked against the log when the snapshot is used: a log truncated and imported again
-- may hold other events at the same positions).
SELECT recorded_at, event_id FROM events WHERE global_position = $1;

-- name: first_position
SELECT min(global_position) FROM events;

-- name: info
-- This and the statements below act on a snapshot's own tables. A schema or table name cannot
-- be a bind parameter: the words in braces (schema, source, table, final) are quoted
-- identifiers (``rebuild.ident``) of names this code chose, filled in by ``str.format``;
-- nothing else is interpolated.
-- ``to_jsonb`` reads ``event_id`` from snapshots taken before it was kept (as NULL).
SELECT tx_id::text AS tx, position, recorded_at, versions::text AS versions, events,
       created_at, (to_jsonb(i) ->> 'event_id')::uuid AS event_id
  FROM {schema}._chronohub_snapshot i;

-- name: copy_table
-- Same columns in the same order: the table's shape is part of the version.
INSERT INTO {schema}.{table} SELECT * FROM {source}.{table};

-- name: set_logged
-- Logged: an unlogged table is emptied by crash recovery, and an empty copy would pass for
-- the state of the hub at that point.
ALTER TABLE {schema}.{table} SET LOGGED;

-- name: create_info
CREATE TABLE {schema}._chronohub_snapshot (
    tx_id       xid8 NOT NULL,
    position    bigint NOT NULL,
    recorded_at timestamptz,
    versions    jsonb NOT NULL,
    events      bigint NOT NULL,
    created_at  timestamptz NOT NULL,
    event_id    uuid
);

-- name: insert_info
INSERT INTO {schema}._chronohub_snapshot
VALUES ($1::text::xid8, $2, $3, $4::jsonb, $5, clock_timestamp(), $6)
RETURNING created_at;

-- name: finish
ALTER SCHEMA {schema} RENAME TO {final};

-- name: drop
DROP SCHEMA IF EXISTS {schema} CASCADE;
