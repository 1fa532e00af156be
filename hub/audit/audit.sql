-- Queries of the audit API (hub/audit/history.py). History queries read committed events by position
-- (not through the fence: they answer "what is in the log", not "what comes next"); the live
-- stream uses events.subscription, which does.
--
-- Filters: $1 cursor position (exclusive), $2 limit, $3 exact types, $4 type LIKE patterns,
-- $5 streams, $6 actor, $7 recorded_at >= , $8 recorded_at <, $9 position >=, $10 position <=,
-- $11 subjects: the event's data contains any of these JSON objects; in the history_about_*
-- queries, $12: more subjects, the user ids of those {"user_id": id} (not in $11).

-- name: history_ascending
SELECT coalesce(json_agg(json_build_object(
           'tag', p.event_type || '@' || p.schema_version,
           'position', p.global_position, 'tx', p.tx_id::text,
           'stream_id', p.stream_id, 'stream_version', p.stream_version,
           'event_id', p.event_id, 'type', p.event_type, 'schema_version', p.schema_version,
           'data', p.data, 'metadata', p.metadata, 'recorded_at', p.recorded_at)
         ORDER BY p.global_position), '[]')::text
  FROM (SELECT *
          FROM events e
         WHERE e.global_position > $1
           AND ($3::text[] IS NULL OR e.event_type = ANY($3::text[]))
           AND ($4::text[] IS NULL OR e.event_type LIKE ANY($4::text[]))
           AND ($5::text[] IS NULL OR e.stream_id = ANY($5::text[]))
           AND ($6::text IS NULL OR e.actor = $6::text)
           AND ($7::timestamptz IS NULL OR e.recorded_at >= $7::timestamptz)
           AND ($8::timestamptz IS NULL OR e.recorded_at < $8::timestamptz)
           AND ($9::bigint IS NULL OR e.global_position >= $9::bigint)
           AND ($10::bigint IS NULL OR e.global_position <= $10::bigint)
           AND ($11::jsonb[] IS NULL OR e.data @> ANY($11::jsonb[]))
         ORDER BY e.global_position
         LIMIT $2) p;

-- name: history_descending
SELECT coalesce(json_agg(json_build_object(
           'tag', p.event_type || '@' || p.schema_version,
           'position', p.global_position, 'tx', p.tx_id::text,
           'stream_id', p.stream_id, 'stream_version', p.stream_version,
           'event_id', p.event_id, 'type', p.event_type, 'schema_version', p.schema_version,
           'data', p.data, 'metadata', p.metadata, 'recorded_at', p.recorded_at)
         ORDER BY p.global_position DESC), '[]')::text
  FROM (SELECT *
          FROM events e
         WHERE e.global_position < $1
           AND ($3::text[] IS NULL OR e.event_type = ANY($3::text[]))
           AND ($4::text[] IS NULL OR e.event_type LIKE ANY($4::text[]))
           AND ($5::text[] IS NULL OR e.stream_id = ANY($5::text[]))
           AND ($6::text IS NULL OR e.actor = $6::text)
           AND ($7::timestamptz IS NULL OR e.recorded_at >= $7::timestamptz)
           AND ($8::timestamptz IS NULL OR e.recorded_at < $8::timestamptz)
           AND ($9::bigint IS NULL OR e.global_position >= $9::bigint)
           AND ($10::bigint IS NULL OR e.global_position <= $10::bigint)
           AND ($11::jsonb[] IS NULL OR e.data @> ANY($11::jsonb[]))
         ORDER BY e.global_position DESC
         LIMIT $2) p;

-- name: history_about_ascending
-- The history about given subjects ($11 not null): their events are found through the index
-- on data first, in a MATERIALIZED CTE, and only then filtered, ordered and cut to a page.
-- Left to itself the planner may instead walk the whole log in position order, hoping to meet
-- the subject's events early: it cannot estimate how rare they are (jsonb containment), and
-- for a rare subject that walk reads the entire log. The cost here grows with the subject's
-- events, never with the log.
-- Subjects {"user_id": id} ($12, the ids) are most of a user's history (every event of the
-- user's stream): those are read in position order through events_user_position (0019),
-- filtered and cut to the page there, so a user's page reads the page's events, not all of
-- the user's (each on a page of its own in a large log). The other subjects ($11) go through
-- the index on data, filtered there. Only the page's positions (at most $2, the union of both
-- cut to the page in `page`) are then joined to the log: with more rows to join the planner
-- judged a merge join along the log's primary key cheaper, and walked the log from its start
-- to the page's last event (1.7 s for a user's first page at 10 million events; 5-20 ms so).
WITH by_user AS MATERIALIZED (
    SELECT page.global_position
      FROM unnest($12::text[]) AS u(id),
           LATERAL (SELECT e.global_position
                      FROM events e
                     WHERE e.data ? 'user_id' AND e.data->>'user_id' = u.id
                       AND e.global_position > $1
                       AND ($3::text[] IS NULL OR e.event_type = ANY($3::text[]))
                       AND ($4::text[] IS NULL OR e.event_type LIKE ANY($4::text[]))
                       AND ($5::text[] IS NULL OR e.stream_id = ANY($5::text[]))
                       AND ($6::text IS NULL OR e.actor = $6::text)
                       AND ($7::timestamptz IS NULL OR e.recorded_at >= $7::timestamptz)
                       AND ($8::timestamptz IS NULL OR e.recorded_at < $8::timestamptz)
                       AND ($9::bigint IS NULL OR e.global_position >= $9::bigint)
                       AND ($10::bigint IS NULL OR e.global_position <= $10::bigint)
                     ORDER BY e.data->>'user_id', e.global_position
                     LIMIT $2) AS page
), by_data AS MATERIALIZED (
    SELECT e.global_position
      FROM events e
     WHERE e.data @> ANY($11::jsonb[]) AND e.global_position > $1
       AND ($3::text[] IS NULL OR e.event_type = ANY($3::text[]))
       AND ($4::text[] IS NULL OR e.event_type LIKE ANY($4::text[]))
       AND ($5::text[] IS NULL OR e.stream_id = ANY($5::text[]))
       AND ($6::text IS NULL OR e.actor = $6::text)
       AND ($7::timestamptz IS NULL OR e.recorded_at >= $7::timestamptz)
       AND ($8::timestamptz IS NULL OR e.recorded_at < $8::timestamptz)
       AND ($9::bigint IS NULL OR e.global_position >= $9::bigint)
       AND ($10::bigint IS NULL OR e.global_position <= $10::bigint)
), page AS MATERIALIZED (
    SELECT global_position FROM by_data
    UNION
    SELECT global_position FROM by_user
     ORDER BY global_position
     LIMIT $2
)
SELECT coalesce(json_agg(json_build_object(
           'tag', p.event_type || '@' || p.schema_version,
           'position', p.global_position, 'tx', p.tx_id::text,
           'stream_id', p.stream_id, 'stream_version', p.stream_version,
           'event_id', p.event_id, 'type', p.event_type, 'schema_version', p.schema_version,
           'data', p.data, 'metadata', p.metadata, 'recorded_at', p.recorded_at)
         ORDER BY p.global_position), '[]')::text
  FROM (SELECT e.* FROM page a JOIN events e USING (global_position)) p;

-- name: history_about_descending
-- The history about given subjects ($11 not null): their events are found through the index
-- on data first, in a MATERIALIZED CTE, and only then filtered, ordered and cut to a page.
-- Left to itself the planner may instead walk the whole log in position order, hoping to meet
-- the subject's events early: it cannot estimate how rare they are (jsonb containment), and
-- for a rare subject that walk reads the entire log. The cost here grows with the subject's
-- events, never with the log.
-- Subjects {"user_id": id} ($12, the ids) are most of a user's history (every event of the
-- user's stream): those are read in position order through events_user_position (0019),
-- filtered and cut to the page there, so a user's page reads the page's events, not all of
-- the user's (each on a page of its own in a large log). The other subjects ($11) go through
-- the index on data, filtered there. Only the page's positions (at most $2, the union of both
-- cut to the page in `page`) are then joined to the log: with more rows to join the planner
-- judged a merge join along the log's primary key cheaper, and walked the log from its start
-- to the page's last event (1.7 s for a user's first page at 10 million events; 5-20 ms so).
WITH by_user AS MATERIALIZED (
    SELECT page.global_position
      FROM unnest($12::text[]) AS u(id),
           LATERAL (SELECT e.global_position
                      FROM events e
                     WHERE e.data ? 'user_id' AND e.data->>'user_id' = u.id
                       AND e.global_position < $1
                       AND ($3::text[] IS NULL OR e.event_type = ANY($3::text[]))
                       AND ($4::text[] IS NULL OR e.event_type LIKE ANY($4::text[]))
                       AND ($5::text[] IS NULL OR e.stream_id = ANY($5::text[]))
                       AND ($6::text IS NULL OR e.actor = $6::text)
                       AND ($7::timestamptz IS NULL OR e.recorded_at >= $7::timestamptz)
                       AND ($8::timestamptz IS NULL OR e.recorded_at < $8::timestamptz)
                       AND ($9::bigint IS NULL OR e.global_position >= $9::bigint)
                       AND ($10::bigint IS NULL OR e.global_position <= $10::bigint)
                     ORDER BY e.data->>'user_id' DESC, e.global_position DESC
                     LIMIT $2) AS page
), by_data AS MATERIALIZED (
    SELECT e.global_position
      FROM events e
     WHERE e.data @> ANY($11::jsonb[]) AND e.global_position < $1
       AND ($3::text[] IS NULL OR e.event_type = ANY($3::text[]))
       AND ($4::text[] IS NULL OR e.event_type LIKE ANY($4::text[]))
       AND ($5::text[] IS NULL OR e.stream_id = ANY($5::text[]))
       AND ($6::text IS NULL OR e.actor = $6::text)
       AND ($7::timestamptz IS NULL OR e.recorded_at >= $7::timestamptz)
       AND ($8::timestamptz IS NULL OR e.recorded_at < $8::timestamptz)
       AND ($9::bigint IS NULL OR e.global_position >= $9::bigint)
       AND ($10::bigint IS NULL OR e.global_position <= $10::bigint)
), page AS MATERIALIZED (
    SELECT global_position FROM by_data
    UNION
    SELECT global_position FROM by_user
     ORDER BY global_position DESC
     LIMIT $2
)
SELECT coalesce(json_agg(json_build_object(
           'tag', p.event_type || '@' || p.schema_version,
           'position', p.global_position, 'tx', p.tx_id::text,
           'stream_id', p.stream_id, 'stream_version', p.stream_version,
           'event_id', p.event_id, 'type', p.event_type, 'schema_version', p.schema_version,
           'data', p.data, 'metadata', p.metadata, 'recorded_at', p.recorded_at)
         ORDER BY p.global_position DESC), '[]')::text
  FROM (SELECT e.* FROM page a JOIN events e USING (global_position)) p;

-- name: custom_plans
-- Only a plan made for the actual subjects uses the index on data: a generic plan cannot
-- tell "no subject filter" from "this subject". Set inside the history query's transaction.
SET LOCAL plan_cache_mode = force_custom_plan;

-- name: user_ids
SELECT name, user_id FROM users WHERE name = ANY($1::text[]);

-- name: group_ids_and_members
SELECT gr.name, gr.group_id, coalesce(array_agg(m.user_id) FILTER (WHERE m.user_id IS NOT NULL),
                                      '{}') AS members
  FROM groups gr LEFT JOIN group_members m USING (group_id)
 WHERE gr.name = ANY($1::text[])
 GROUP BY gr.name, gr.group_id;

-- name: project_ids_owned
-- Every project ever created by the owners $1 (JSON objects {"owner_id": …}), deleted ones too:
-- their events stay about their owner. Found through the index on data.
SELECT DISTINCT data->>'project_id' AS project_id
  FROM events
 WHERE data @> ANY($1::jsonb[]) AND event_type = 'project.created';

-- name: project_ids_named
-- The projects called $1 (owner/name) now, or until a rename (an old name not taken since).
SELECT p.project_id
  FROM projects p
  LEFT JOIN users u ON p.owner_kind = 'user' AND u.user_id = p.owner_id
  LEFT JOIN groups g ON p.owner_kind = 'group' AND g.group_id = p.owner_id
 WHERE EXISTS (SELECT 1 FROM unnest($1::text[]) AS n
                WHERE split_part(n, '/', 1) = coalesce(u.name, g.name)
                  AND lower(split_part(n, '/', 2)) = lower(p.name));

-- name: names_of_ids
-- The users and groups among the ids $1 (an event's subjects), with their names now.
SELECT 'user' AS kind, user_id AS id, name FROM users WHERE user_id = ANY($1::uuid[])
UNION ALL
SELECT 'group' AS kind, group_id AS id, name FROM groups WHERE group_id = ANY($1::uuid[]);
