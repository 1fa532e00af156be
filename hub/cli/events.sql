-- Queries of the event-log commands (hub/cli/events.py): stats (state --at: hub/audit/moment.sql;
-- export and import: hub/audit/export_format.sql).

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
