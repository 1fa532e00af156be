-- Queries of the event-log commands (hub/cli/events.py): export, import, stats and state.

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
-- here, byte for byte what events_cli.export_line writes (the Python path, kept as the
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

-- name: stats_by_type
SELECT event_type, count(*) AS events,
       to_char(min(recorded_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS first,
       to_char(max(recorded_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS last
  FROM events
 GROUP BY event_type
 ORDER BY count(*) DESC, event_type;

-- name: stats_by_day
-- Days in UTC, whatever the session's time zone.
SELECT to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, count(*) AS events,
       count(DISTINCT event_type) AS types
  FROM events
 GROUP BY 1
 ORDER BY 1;

-- name: checkpoint_at_position
-- The checkpoint of the event at a global position, if a fenced reader can see it.
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

-- The state queries run with search_path on the scratch schema that holds the projections
-- as of a past checkpoint: the unqualified names read the past, not the live tables. Each
-- returns display columns, then the number of rows in all.

-- name: state_users
SELECT name, CASE WHEN admin THEN 'yes' ELSE 'no' END AS admin,
       to_char(created AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS "created (UTC)",
       count(*) OVER () AS total
  FROM users
 ORDER BY users.created, name
 LIMIT $1;

-- name: state_groups
SELECT gr.name,
       coalesce((SELECT string_agg(u.name, ', ' ORDER BY u.name)
                   FROM group_members m JOIN users u USING (user_id)
                  WHERE m.group_id = gr.group_id), '') AS members,
       count(*) OVER () AS total
  FROM groups gr
 ORDER BY gr.name
 LIMIT $1;

-- name: state_tokens
-- Never a secret: there is none in the projections (token_secrets is not replayed).
SELECT t.token_id AS id, coalesce(u.name, 'service ' || t.service) AS owner,
       array_to_string(t.scopes, ', ') AS scopes,
       coalesce(to_char(t.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), 'never')
           AS "expires (UTC)",
       count(*) OVER () AS total
  FROM tokens t LEFT JOIN users u USING (user_id)
 ORDER BY t.created, t.token_id
 LIMIT $1;

-- name: state_servers
SELECT s.user_name AS "user", s.server_name AS server, s.state,
       coalesce(s.url, '') AS url,
       coalesce(to_char(s.started AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), '')
           AS "started (UTC)",
       count(*) OVER () AS total
  FROM servers s
 ORDER BY s.user_name, s.server_name
 LIMIT $1;
