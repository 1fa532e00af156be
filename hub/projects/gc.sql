-- Queries of hub/projects/gc.py: the roots of a project's objects.

-- name: projects
SELECT project_id FROM projects ORDER BY project_id;

-- name: roots
-- $1 the project, $2 the start of the grace period: the commits (and tags) its refs point at
-- now, and every one its refs pointed at, before or after a push, within the grace period.
SELECT sha FROM project_refs WHERE project_id = $1
UNION
SELECT r.value ->> side
  FROM events e, jsonb_array_elements(e.data -> 'refs') r, unnest(ARRAY['old', 'new']) side
 WHERE e.stream_id = $3 AND e.event_type = 'project.pushed' AND e.recorded_at >= $2;
