-- Queries of group commit (events/group_commit.py).

-- name: append_many
-- Several appends, each to a stream of its own, in one statement: one row per event.
-- $1 stream id, $2 its append's expected version (-1 any, 0 must not exist, n exact),
-- $3 event id, $4 type, $5 schema version, $6 data, $7 metadata, $8 actor, $9 the event's
-- ordinal within its append (1, 2, ...).
-- An append whose stream is not at its expected version gets no row (the others are
-- written); the caller maps returned rows to appends by event id. As in the store's append,
-- a race with another writer for the same next version fails the statement with a unique
-- violation on events_stream_version_key, and a reused event id on events_event_id_key.
WITH req AS (
    SELECT *
      FROM unnest($1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::smallint[],
                  $6::jsonb[], $7::jsonb[], $8::text[], $9::int[])
               WITH ORDINALITY AS r(s, x, id, t, sv, d, m, a, ord, n)
), current_version AS (
    SELECT q.s,
           (SELECT coalesce(max(e.stream_version), 0) FROM events e WHERE e.stream_id = q.s)
               AS version
      FROM (SELECT DISTINCT r.s FROM req r) q
)
INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, data,
                    metadata, actor)
SELECT r.s, c.version + r.ord, r.id, r.t, r.sv, r.d, r.m, r.a
  FROM req r JOIN current_version c ON c.s = r.s
 WHERE r.x = -1 OR c.version = r.x
 ORDER BY r.n
RETURNING event_id, global_position, stream_version, tx_id::text AS tx, recorded_at;
