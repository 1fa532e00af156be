-- The projects API's reads (hub/api/projects.py). The caller's role on one project comes from
-- hub/projects/projects.sql (project_by_name).

-- name: owner_by_name
-- The user or else the group called $1: a project's owner.
SELECT kind, id, name FROM (
    SELECT 1 AS rank, 'user' AS kind, user_id AS id, name FROM users WHERE name = $1
    UNION ALL
    SELECT 2, 'group', group_id, name FROM groups WHERE name = $1
) o
ORDER BY rank
LIMIT 1;

-- name: project_exists
SELECT EXISTS (SELECT 1 FROM projects WHERE owner_id = $1 AND lower(name) = lower($2));

-- name: projects_with_roles
-- Every project (of owner $2, when given) with its owner's name and the caller's ($1) role
-- through grants to them or their groups (member_role, counting the owning group as write),
-- and whether it was shared with them by a grant (shared). The caller's scopes and the
-- projects' visibility decide which of them are shown (hub/projects/access.py).
SELECT p.project_id, p.owner_kind, p.owner_id, coalesce(u.name, g.name) AS owner, p.name,
       p.description, p.visibility, p.default_branch, p.created, p.last_push,
       (SELECT (ARRAY['read', 'write', 'admin'])[max(array_position(
                   ARRAY['read', 'write', 'admin'], r.role))]
          FROM (SELECT m.role FROM project_members m
                 WHERE m.project_id = p.project_id AND m.member_kind = 'user'
                   AND m.member_id = $1
                UNION ALL
                SELECT m.role FROM project_members m
                  JOIN group_members gm ON gm.group_id = m.member_id
                 WHERE m.project_id = p.project_id AND m.member_kind = 'group'
                   AND gm.user_id = $1
                UNION ALL
                SELECT 'write' FROM group_members gm
                 WHERE p.owner_kind = 'group' AND gm.group_id = p.owner_id
                   AND gm.user_id = $1) r) AS member_role,
       EXISTS (SELECT 1 FROM project_members m
                WHERE m.project_id = p.project_id
                  AND ((m.member_kind = 'user' AND m.member_id = $1)
                       OR (m.member_kind = 'group' AND m.member_id IN (
                              SELECT group_id FROM group_members WHERE user_id = $1))))
           AS shared
  FROM projects p
  LEFT JOIN users u ON p.owner_kind = 'user' AND u.user_id = p.owner_id
  LEFT JOIN groups g ON p.owner_kind = 'group' AND g.group_id = p.owner_id
 WHERE $2::text IS NULL OR coalesce(u.name, g.name) = $2
 ORDER BY lower(coalesce(u.name, g.name)), lower(p.name);

-- name: members
SELECT m.member_kind AS kind, coalesce(u.name, g.name) AS name, m.role
  FROM project_members m
  LEFT JOIN users u ON m.member_kind = 'user' AND u.user_id = m.member_id
  LEFT JOIN groups g ON m.member_kind = 'group' AND g.group_id = m.member_id
 WHERE m.project_id = $1
 ORDER BY m.member_kind DESC, lower(coalesce(u.name, g.name));

-- name: member_role
SELECT role FROM project_members WHERE project_id = $1 AND member_kind = $2 AND member_id = $3;

-- name: user_id_by_name
SELECT user_id FROM users WHERE name = $1;

-- name: group_id_by_name
SELECT group_id FROM groups WHERE name = $1;
