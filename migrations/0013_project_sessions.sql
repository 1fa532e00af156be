-- Shared execution sessions opened on a project's notebook (projections/projects.py, from
-- project.session_opened and project.committed_from_session). The room's access follows the
-- project: hub/projects/sessions.py looks the room up here at each check, so a member removed
-- later loses access to the room. ``head`` is the commit the session's next commit builds
-- on, and ``branch`` where it goes (null: opened on a tag or a commit, commits go to
-- collab/<session_id>); a commit moves both.
CREATE TABLE project_sessions (
    session_id  uuid PRIMARY KEY,
    project_id  uuid NOT NULL,
    room        text NOT NULL UNIQUE,
    path        text NOT NULL,
    ref         text NOT NULL,
    branch      text,
    head        text NOT NULL,
    opened_by   text NOT NULL,
    opened      timestamptz NOT NULL
);
CREATE INDEX project_sessions_project ON project_sessions (project_id);

-- Who wrote the updates a compaction folded into a snapshot (``kind:name`` labels, first
-- writer first), so a room's authors survive its compaction: a commit from a session names
-- everyone who edited the room (collab/persistence.py ``authors``).
ALTER TABLE collab_snapshots ADD COLUMN authors text[] NOT NULL DEFAULT '{}';
