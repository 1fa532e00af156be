-- The names projects had before a rename (projections/projects.py), so that an old clone URL
-- or REST path answers with the project's new name instead of a bare "not found". An old name
-- is forgotten when the project takes it back, when a project of that name is created (it
-- belongs to the new project then) and when the project goes.
CREATE TABLE project_old_names (
    owner_id   uuid NOT NULL,
    name       text NOT NULL,
    project_id uuid NOT NULL,
    renamed    timestamptz NOT NULL
);
CREATE UNIQUE INDEX project_old_names_owner_name ON project_old_names (owner_id, lower(name));
CREATE INDEX project_old_names_project ON project_old_names (project_id);
