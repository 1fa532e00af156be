-- The export/import format's queries (hub/audit/export_format.py): build export lines in
-- PostgreSQL, restore an export into an empty log.

-- name: export_bounds
-- Where the export's pages end: the checkpoint of every $3-th event after ($1 tx,
-- $2 position) that a fenced reader sees now, and how many there are in all (the progress
-- bar's total). Later snapshots see the same events up to the last bound (whatever commits
-- later has a newer transaction id, so it sorts after), so pages between bounds can be built
-- side by side on several connections.
SELECT count(*) AS total,
       coalesce(array_agg(b.tx_id::text ORDER BY b.n) FILTER (WHERE b.n % $3 = 0), '{}') AS txs,
       coalesce(array_agg(b.global_position ORDER BY b.n) FILTER (WHERE b.n % $3 = 0), '{}')
           AS positions
  FROM (SELECT e.tx_id, e.global_position,
               row_number() OVER (ORDER BY e.tx_id, e.global_position) AS n
          FROM events e
         WHERE (e.tx_id, e.global_position) > ($1::text::xid8, $2::bigint)
           AND e.tx_id < pg_snapshot_xmin(pg_current_snapshot())) b;

-- name: export_page
-- One fenced page of the export after ($1 tx, $2 position), at most $3 events, up to and
-- including ($6 tx, $7 position) when given, each line built
-- here, byte for byte what export_format.export_line writes (the Python path, kept as the
-- reference and for the lines this query leaves to it): compact JSON, the payload's keys in
-- its model's order ($4: per current "type@version", the model's field names; jsonb keeps
-- its keys sorted), times as Python's isoformat writes them. A line is NULL when only Python
-- can write it exactly: an older schema version (upcast on read), a payload missing a model
-- field, or a free-form payload ($5: its types) holding a number (jsonb keeps numbers as
-- decimals, Python as floats); then the caller writes the whole page in Python. Returns the
-- lines in order, each with its event's checkpoint. (Rows, not one aggregate: an ordered
-- aggregate sorts its input again, and the line would be built once per reference to it.)
WITH page AS (
    SELECT e.*
      FROM events e
     WHERE (e.tx_id, e.global_position) > ($1::text::xid8, $2::bigint)
       AND e.tx_id < pg_snapshot_xmin(pg_current_snapshot())
       AND ($6::text IS NULL OR (e.tx_id, e.global_position) <= ($6::text::xid8, $7::bigint))
     ORDER BY e.tx_id, e.global_position
     LIMIT $3
)
SELECT p.tx_id::text AS tx, p.global_position AS position,
       '{"id":"' || p.tx_id::text || ':' || p.global_position ||
       '","position":' || p.global_position ||
       ',"type":' || to_json(p.event_type)::text ||
       ',"schema_version":' || p.schema_version ||
       ',"stream":' || to_json(p.stream_id)::text ||
       ',"version":' || p.stream_version ||
       ',"time":"' || x.at || 'Z","actor":' || x.actor ||
       ',"data":' || x.payload ||
       ',"request_id":' || x.request_id ||
       ',"correlation_id":' || x.correlation_id ||
       ',"causation_id":' || x.causation_id ||
       ',"event_id":"' || p.event_id::text ||
       '","recorded_at":"' || x.at || '+00:00","metadata":{"actor":' || x.actor ||
       ',"request_id":' || x.request_id ||
       ',"correlation_id":' || x.correlation_id ||
       ',"causation_id":' || x.causation_id ||
       ',"client_address":' || (p.metadata -> 'client_address')::text || E'}}\n' AS line
  FROM page p
 -- OFFSET 0 keeps this a subquery, evaluated once per row: its columns are used twice.
 CROSS JOIN LATERAL (
       SELECT replace(to_char(p.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'),
                      '.000000', '') AS at,
              '{"kind":' || (p.metadata #> '{actor,kind}')::text ||
                  ',"name":' || (p.metadata #> '{actor,name}')::text || '}' AS actor,
              (p.metadata -> 'request_id')::text AS request_id,
              (p.metadata -> 'correlation_id')::text AS correlation_id,
              (p.metadata -> 'causation_id')::text AS causation_id,
              (SELECT CASE WHEN bool_and(p.data ? k.key) THEN
                          '{' || string_agg(to_json(k.key)::text || ':' ||
                                            CASE WHEN jsonb_typeof(p.data -> k.key)
                                                      IN ('object', 'array')
                                                 THEN regexp_replace((p.data -> k.key)::text,
                                                          '("(?:[^"\\]|\\.)*")|([,:]) ', '\1\2', 'g')
                                                 ELSE (p.data -> k.key)::text END,
                                            ',' ORDER BY k.ord) || '}'
                      END
                 FROM jsonb_array_elements_text(
                          $4::jsonb -> (p.event_type || '@' || p.schema_version))
                          WITH ORDINALITY AS k(key, ord)
                WHERE NOT (p.event_type = ANY($5::text[])
                           AND jsonb_path_exists(p.data, '$.** ? (@.type() == "number")'))
              ) AS payload
       OFFSET 0) x
 ORDER BY p.tx_id, p.global_position;

-- name: stored_data
-- The payloads as stored, for events of an older schema version (the decoded models hold
-- them upcast).
SELECT event_id, data::text AS data FROM events WHERE event_id = ANY($1::uuid[]);

-- name: lock_log
-- Inside the import's transaction: keep other writers out until it commits.
LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE;

-- name: any_event
SELECT EXISTS (SELECT 1 FROM events);

-- name: import_batch
-- One batch of imported events, in the order given, so the positions the identity column
-- assigns follow the file. Everything but the position and the transaction id is kept.
INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, data,
                    metadata, actor, recorded_at)
SELECT e.s, e.v, e.id, e.t, e.sv, e.d, e.m, e.a, e.r
  FROM unnest($1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::smallint[], $6::jsonb[],
              $7::jsonb[], $8::text[], $9::timestamptz[])
           WITH ORDINALITY AS e(s, v, id, t, sv, d, m, a, r, ord)
 ORDER BY e.ord;
