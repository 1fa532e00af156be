-- Queries of hub/projects/cleanup.py: which repositories on disk a project still needs.

-- name: projects_owned_by
-- $1 'user' or 'group', $2 its id: the projects that go when it does.
SELECT project_id FROM projects WHERE owner_kind = $1 AND owner_id = $2;

-- name: projects_existing
-- Of the project ids $1, those that name a project.
SELECT project_id FROM projects WHERE project_id = ANY($1::uuid[]);
