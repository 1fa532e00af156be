-- The projects capability's reads (hub/projects/): a project by its name with the caller's
-- role on it, its refs, and the row lock a push takes.

-- name: project_by_name
-- $1 owner name, $2 project name (any case), $3 the caller's user id (NULL: none). The owner
-- is a user or a group of that name; member_role is the best role the caller holds through a
-- grant to them, to one of their groups, or as a member of the owning group (write).
WITH owner AS (
    SELECT 'user' AS kind, user_id AS id, name FROM users WHERE name = $1
    UNION ALL
    SELECT 'group', group_id, name FROM groups WHERE name = $1
)
SELECT p.project_id, p.owner_kind, p.owner_id, owner.name AS owner, p.name, p.description,
       p.visibility, p.default_branch, p.created, p.last_push,
       (SELECT (ARRAY['read', 'write', 'admin'])[max(array_position(
                   ARRAY['read', 'write', 'admin'], r.role))]
          FROM (SELECT m.role FROM project_members m
                 WHERE m.project_id = p.project_id AND m.member_kind = 'user'
                   AND m.member_id = $3
                UNION ALL
                SELECT m.role FROM project_members m
                  JOIN group_members gm ON gm.group_id = m.member_id
                 WHERE m.project_id = p.project_id AND m.member_kind = 'group'
                   AND gm.user_id = $3
                UNION ALL
                SELECT 'write' FROM group_members gm
                 WHERE p.owner_kind = 'group' AND gm.group_id = p.owner_id
                   AND gm.user_id = $3) r) AS member_role
  FROM owner
  JOIN projects p ON p.owner_kind = owner.kind AND p.owner_id = owner.id
 WHERE lower(p.name) = lower($2);

-- name: token_scopes
SELECT scopes FROM tokens WHERE token_id = $1;

-- name: refs
SELECT ref, sha FROM project_refs WHERE project_id = $1 ORDER BY ref;

-- name: lock_project
-- A push holds this row lock from reading the refs to appending its event: pushes to one
-- project take turns there, so comparing the refs is a compare-and-swap.
SELECT default_branch FROM projects WHERE project_id = $1 FOR UPDATE;

-- name: renamed_project
-- The project once called $2 (any case) of the user or group called $1, by its name now.
WITH owner AS (
    SELECT user_id AS id, name FROM users WHERE name = $1
    UNION ALL
    SELECT group_id, name FROM groups WHERE name = $1
)
SELECT owner.name AS owner, p.name
  FROM owner
  JOIN project_old_names o ON o.owner_id = owner.id
  JOIN projects p ON p.project_id = o.project_id
 WHERE lower(o.name) = lower($2);
