-- Queries of the event-log commands (hub/events_cli.py): export, import, stats and state.

-- name: count_after
-- How many committed events follow a checkpoint ($1 tx, $2 position): the total of the
-- export's progress bar (approximate: it does not wait for the fence).
SELECT count(*)
  FROM events e
 WHERE (e.tx_id, e.global_position) > ($1::text::xid8, $2::bigint);

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
