-- Queries of hub/backup/operations.py: what a manifest records, whether a database is empty,
-- and moving a restored cluster's transaction counter past the log's.

-- name: export_snapshot
SELECT pg_export_snapshot();

-- name: schema_version
SELECT coalesce(max(version), 0) FROM schema_migrations;

-- name: log_summary
-- The event count and the last event in readers' (tx, position) order (events/queries.sql).
SELECT (SELECT count(*) FROM events) AS events,
       last.tx_id::text AS tx, last.global_position AS position, last.event_id::text AS event_id
  FROM (SELECT 1) one
  LEFT JOIN LATERAL (SELECT tx_id, global_position, event_id FROM events
                      ORDER BY tx_id DESC, global_position DESC LIMIT 1) last ON true;

-- name: user_relations
-- Tables, views, sequences … outside PostgreSQL's own schemas: a database with none is empty.
SELECT n.nspname || '.' || c.relname AS name
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
   AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
 ORDER BY 1
 LIMIT 5;

-- name: has_ledger
SELECT to_regclass('schema_migrations') IS NOT NULL;

-- name: xid_gap
-- How many transaction ids the cluster must still hand out before a new transaction's id is
-- above $1, the newest restored event's.
SELECT greatest($1::bigint - pg_current_xact_id()::text::bigint + 1, 0);

-- name: consume_xids
-- $1 transactions, each committed on its own so that each takes an id (a DO block may commit
-- when it is not inside a transaction block). Commits wait for no disk flush: these write nothing.
DO $$
BEGIN
  PERFORM set_config('synchronous_commit', 'off', false);
  FOR i IN 1..current_setting('chronohub.consume_xids')::bigint LOOP
    PERFORM pg_current_xact_id();
    COMMIT;
  END LOOP;
END
$$;

-- name: set_xids_to_consume
SELECT set_config('chronohub.consume_xids', $1::bigint::text, false);
