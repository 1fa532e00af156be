-- Queries of the event store (events/store.py).
--
-- Reading in global order uses the transaction-id fence: a reader only sees events whose
-- writing transaction is older than the oldest one still in flight, and orders and
-- checkpoints by the pair (tx_id, global_position). A sequence alone hands out positions in
-- insertion order, not commit order, and a reader trusting it skips late commits.
-- ORDER BY columns are qualified (e.tx_id): an unqualified name would bind to the output
-- column of the same name and sort text, and lose the index.

-- name: append
-- $1 stream_id, $2 expected (-1 any, 0 must not exist, n exact), $3 event ids, $4 types,
-- $5 schema versions, $6 data, $7 metadata, $8 actor.
-- Returns no row when the stream is not at the expected version. Two appenders that both
-- find it there race for the same next version: the unique key lets one commit and fails
-- the other with a unique violation on events_stream_version_key.
WITH current_version AS (
    SELECT coalesce(max(stream_version), 0) AS version FROM events WHERE stream_id = $1
)
INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, data,
                    metadata, actor)
SELECT $1, c.version + e.ord, e.id, e.t, e.sv, e.d, e.m, $8
  FROM current_version c,
       unnest($3::uuid[], $4::text[], $5::smallint[], $6::jsonb[], $7::jsonb[])
           WITH ORDINALITY AS e(id, t, sv, d, m, ord)
 WHERE $2::bigint = -1 OR c.version = $2::bigint
RETURNING global_position, stream_version, tx_id::text AS tx, recorded_at;

-- name: append_one
-- The same as append for a single event, with scalars instead of arrays: cheaper to encode
-- and to execute, and most appends are of one event. A lost race for the version or a reused
-- event id writes nothing (no row returned) instead of failing on the unique key, so that
-- inside a caller's transaction the append needs no savepoint; with one row, "nothing"
-- cannot be half an append.
WITH current_version AS (
    SELECT coalesce(max(stream_version), 0) AS version FROM events WHERE stream_id = $1
)
INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, data,
                    metadata, actor)
SELECT $1, c.version + 1, $3, $4, $5, $6, $7, $8
  FROM current_version c
 WHERE $2::bigint = -1 OR c.version = $2::bigint
ON CONFLICT DO NOTHING
RETURNING global_position, stream_version, tx_id::text AS tx, recorded_at;

-- name: events_by_id
SELECT event_id, stream_id, stream_version
  FROM events
 WHERE event_id = ANY($1::uuid[])
 ORDER BY stream_version;

-- name: stream_version
SELECT coalesce(max(stream_version), 0) FROM events WHERE stream_id = $1;

-- name: read_stream
-- One stream from a version on, in version order, as rows for events.models.Registry.decode_rows.
SELECT e.global_position, e.tx_id, e.stream_id, e.stream_version, e.event_id,
       e.event_type, e.schema_version, e.data, e.metadata, e.recorded_at
  FROM events e
 WHERE e.stream_id = $1 AND e.stream_version >= $2
 ORDER BY e.stream_version
 LIMIT $3;

-- name: read_all
-- A fenced page in global order after ($1 tx, $2 position), at most $3 events, filtered by
-- exact types $4, type patterns $5 (LIKE, e.g. 'server.%'), streams $6, actor $7,
-- recorded_at >= $8 and < $9, and at most up to ($10 tx, $11 position) when given.
-- $12 false drops the fence: only for a caller that holds locks keeping writers out of
-- what it reads (the swap of a projection rebuild).
-- Plain rows, decoded by events.models.Registry.decode_rows: the columns come typed from
-- PostgreSQL's binary protocol (tx_id too: the driver reads xid8 as an int, where a text
-- cast cost the server a conversion and the client a parse per row), so only the payload is
-- validated in Python. (Pages built as one JSON document by the server, json_agg of
-- json_build_object, cost the server four times a plain read and the client twice the
-- decoding: measured, see docs/benchmarks.md.)
SELECT e.global_position, e.tx_id, e.stream_id, e.stream_version, e.event_id,
       e.event_type, e.schema_version, e.data, e.metadata, e.recorded_at
  FROM events e
 WHERE (e.tx_id, e.global_position) > ($1::text::xid8, $2::bigint)
   AND (NOT $12::boolean OR e.tx_id < pg_snapshot_xmin(pg_current_snapshot()))
   AND ($4::text[] IS NULL OR e.event_type = ANY($4::text[]))
   AND ($5::text[] IS NULL OR e.event_type LIKE ANY($5::text[]))
   AND ($6::text[] IS NULL OR e.stream_id = ANY($6::text[]))
   AND ($7::text IS NULL OR e.actor = $7::text)
   AND ($8::timestamptz IS NULL OR e.recorded_at >= $8::timestamptz)
   AND ($9::timestamptz IS NULL OR e.recorded_at < $9::timestamptz)
   AND ($10::text IS NULL OR (e.tx_id, e.global_position) <= ($10::text::xid8, $11::bigint))
 ORDER BY e.tx_id, e.global_position
 LIMIT $3;

-- name: head
-- The last event a fenced reader can see now, or none.
SELECT e.tx_id::text AS tx, e.global_position AS position
  FROM events e
 WHERE e.tx_id < pg_snapshot_xmin(pg_current_snapshot())
 ORDER BY e.tx_id DESC, e.global_position DESC
 LIMIT 1;
