-- Queries of hub/projects/sessions.py: shared execution sessions opened on a project's
-- notebook (the project_sessions read model, projections/projects.py; migrations/0013).

-- name: session_of_room
-- The session whose room this is, with the project's owner and name as they are now.
SELECT s.session_id, s.project_id, s.room, s.path, s.ref, s.branch, s.head,
       coalesce(u.name, g.name) AS owner, p.name, p.default_branch
  FROM project_sessions s
  JOIN projects p ON p.project_id = s.project_id
  LEFT JOIN users u ON p.owner_kind = 'user' AND u.user_id = p.owner_id
  LEFT JOIN groups g ON p.owner_kind = 'group' AND g.group_id = p.owner_id
 WHERE s.room = $1;

-- name: session_by_id
SELECT s.session_id, s.project_id, s.room, s.path, s.ref, s.branch, s.head,
       coalesce(u.name, g.name) AS owner, p.name, p.default_branch
  FROM project_sessions s
  JOIN projects p ON p.project_id = s.project_id
  LEFT JOIN users u ON p.owner_kind = 'user' AND u.user_id = p.owner_id
  LEFT JOIN groups g ON p.owner_kind = 'group' AND g.group_id = p.owner_id
 WHERE s.session_id = $1;

-- name: sessions_of_project
-- Of the sessions $2 (those running in this process), the project's, newest first.
SELECT session_id, room, path, ref, branch, head, opened_by, opened
  FROM project_sessions WHERE project_id = $1 AND session_id = ANY($2::uuid[])
 ORDER BY opened DESC;
