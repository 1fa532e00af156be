-- Who could use a project at a past moment (hub/projects/past_access.py). The access_* queries
-- run with search_path on a scratch schema holding the projections as of that moment
-- (projections.rebuild.as_of), so their unqualified names read the past.

-- name: access_project
SELECT p.project_id, p.owner_kind, p.owner_id, coalesce(u.name, g.name) AS owner, p.name,
       p.visibility
  FROM projects p
  LEFT JOIN users u ON p.owner_kind = 'user' AND u.user_id = p.owner_id
  LEFT JOIN groups g ON p.owner_kind = 'group' AND g.group_id = p.owner_id
 WHERE p.project_id = $1;

-- name: access_users
SELECT user_id, name, admin FROM users ORDER BY name;

-- name: access_members
-- The project's members: users and groups, with the role given to each.
SELECT m.member_kind AS kind, m.member_id AS id, m.role
  FROM project_members m
 WHERE m.project_id = $1;

-- name: access_groups
-- Every group with its members' ids (a group without members has an empty array).
SELECT gr.group_id, gr.name,
       coalesce(array_agg(m.user_id) FILTER (WHERE m.user_id IS NOT NULL), '{}') AS members
  FROM groups gr LEFT JOIN group_members m USING (group_id)
 GROUP BY gr.group_id, gr.name;

-- name: access_role_grants
-- Roles held by users and groups, with their scopes.
SELECT r.name, r.scopes, g.principal_kind, g.principal
  FROM role_grants g JOIN roles r ON r.name = g.role
 WHERE g.principal_kind IN ('user', 'group')
 ORDER BY r.name;
