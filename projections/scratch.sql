-- Scratch schemas of time travel (projections/rebuild.py ``as_of``): each is held by a session
-- advisory lock of its own while in use, so that a sweep drops only those nobody uses (left
-- by a process that died, or a replay whose drop failed).

-- name: hold
SELECT pg_advisory_lock(hashtextextended('chronohub-scratch:' || $1, 0));

-- name: release
SELECT pg_advisory_unlock(hashtextextended('chronohub-scratch:' || $1, 0));

-- name: try_hold
SELECT pg_try_advisory_lock(hashtextextended('chronohub-scratch:' || $1, 0));

-- name: named
-- The scratch schemas of one purpose: ``<purpose>_<16 hex digits>`` (``scratch_name``).
SELECT nspname::text AS name
  FROM pg_namespace
 WHERE nspname ~ ('^' || $1 || '_[0-9a-f]{16}$')
 ORDER BY nspname;
