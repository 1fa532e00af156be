-- Read models of git projects (projections/projects.py): the projects, who may use them, and
-- where each of their refs points. The git objects themselves are on disk, one bare
-- repository per project under <data_dir>/projects/<project_id>.git; these tables are the
-- only place refs live, so a push moves them in the same transaction as its event.

-- owner_kind is 'user' (owner_id = user id) or 'group' (group id): renaming the owner keeps
-- the project. Names are unique per owner regardless of case, as clone URLs are compared.
CREATE TABLE projects (
    project_id     uuid PRIMARY KEY,
    owner_kind     text NOT NULL CHECK (owner_kind IN ('user', 'group')),
    owner_id       uuid NOT NULL,
    name           text NOT NULL,
    description    text NOT NULL,
    visibility     text NOT NULL CHECK (visibility IN ('private', 'hub', 'public')),
    default_branch text NOT NULL,
    created        timestamptz NOT NULL,
    last_push      timestamptz,
    last_position  bigint NOT NULL
);
CREATE UNIQUE INDEX projects_owner_name ON projects (owner_id, lower(name));

-- member_kind is 'user' or 'group'; a group's members hold its role while they are in it.
CREATE TABLE project_members (
    project_id  uuid NOT NULL,
    member_kind text NOT NULL CHECK (member_kind IN ('user', 'group')),
    member_id   uuid NOT NULL,
    role        text NOT NULL CHECK (role IN ('read', 'write', 'admin')),
    PRIMARY KEY (project_id, member_kind, member_id)
);
CREATE INDEX project_members_member ON project_members (member_kind, member_id);

CREATE TABLE project_refs (
    project_id uuid NOT NULL,
    ref        text NOT NULL,
    sha        text NOT NULL,
    PRIMARY KEY (project_id, ref)
);
