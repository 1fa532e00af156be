-- Queries of the projects projection (projections/projects.py). Each statement applies one
-- event; none reads another projection's tables, so a rebuild replays the same way.

-- name: project_create
-- A new project takes its name from any project that was once called so.
WITH taken AS (DELETE FROM project_old_names WHERE owner_id = $3 AND lower(name) = lower($4))
INSERT INTO projects (project_id, owner_kind, owner_id, name, description, visibility,
                      default_branch, created, last_push, last_position)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9);

-- name: project_update
UPDATE projects
   SET description = coalesce($2, description),
       visibility = coalesce($3, visibility),
       default_branch = coalesce($4, default_branch),
       last_position = $5
 WHERE project_id = $1;

-- name: project_rename
-- $4: the old name, remembered for the project (replacing what another project left under
-- it); its new name, if it was one of its old ones, is an old name no more.
WITH renamed AS (
    UPDATE projects SET name = $2, last_position = $3 WHERE project_id = $1
    RETURNING owner_id
), reused AS (
    DELETE FROM project_old_names o USING renamed r
     WHERE o.owner_id = r.owner_id AND lower(o.name) = lower($2)
)
INSERT INTO project_old_names (owner_id, name, project_id, renamed)
SELECT owner_id, $4, $1, $5 FROM renamed
 WHERE lower($4) <> lower($2)
ON CONFLICT (owner_id, lower(name))
DO UPDATE SET name = excluded.name, project_id = excluded.project_id, renamed = excluded.renamed;

-- name: project_delete
WITH members AS (DELETE FROM project_members WHERE project_id = $1),
     old_names AS (DELETE FROM project_old_names WHERE project_id = $1),
     refs AS (DELETE FROM project_refs WHERE project_id = $1),
     sessions AS (DELETE FROM project_sessions WHERE project_id = $1)
DELETE FROM projects WHERE project_id = $1;

-- name: member_grant
INSERT INTO project_members (project_id, member_kind, member_id, role)
VALUES ($1, $2, $3, $4)
ON CONFLICT (project_id, member_kind, member_id) DO UPDATE SET role = excluded.role;

-- name: member_revoke
DELETE FROM project_members WHERE project_id = $1 AND member_kind = $2 AND member_id = $3;

-- name: refs_set
-- A push's refs: created or moved ($3 is the new sha of each of $2), all in one statement.
INSERT INTO project_refs (project_id, ref, sha)
SELECT $1, ref, sha FROM unnest($2::text[], $3::text[]) AS r(ref, sha)
ON CONFLICT (project_id, ref) DO UPDATE SET sha = excluded.sha;

-- name: refs_delete
DELETE FROM project_refs WHERE project_id = $1 AND ref = ANY($2::text[]);

-- name: pushed
UPDATE projects SET last_push = $2, last_position = $3 WHERE project_id = $1;

-- name: owner_deleted
-- A user or group that goes takes its projects along (their members and refs too), and its
-- grants on other projects.
WITH gone AS (DELETE FROM projects WHERE owner_kind = $1 AND owner_id = $2 RETURNING project_id),
     members AS (DELETE FROM project_members WHERE project_id IN (SELECT project_id FROM gone)),
     refs AS (DELETE FROM project_refs WHERE project_id IN (SELECT project_id FROM gone)),
     sessions AS (DELETE FROM project_sessions WHERE project_id IN (SELECT project_id FROM gone)),
     old_names AS (DELETE FROM project_old_names WHERE owner_id = $2)
DELETE FROM project_members WHERE member_kind = $1 AND member_id = $2;

-- name: session_opened
INSERT INTO project_sessions
    (session_id, project_id, room, path, ref, branch, head, opened_by, opened)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9);

-- name: session_committed
-- The session's next commit builds on this one, on the branch this one went to.
UPDATE project_sessions SET branch = $2, head = $3 WHERE session_id = $1;
