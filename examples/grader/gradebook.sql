-- The grader service's own data (SQLite). Queries are loaded by name (gradebook.py).

-- name: schema
CREATE TABLE IF NOT EXISTS cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_event_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS projects (
    project_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    name TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS projects_by_name ON projects (owner, name);
CREATE TABLE IF NOT EXISTS pushes (
    event_id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    pusher TEXT NOT NULL,
    pusher_kind TEXT NOT NULL,
    pushed_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS pushes_by_project ON pushes (project_id, pushed_at);
CREATE TABLE IF NOT EXISTS assignments (
    course TEXT NOT NULL,
    name TEXT NOT NULL,
    release_owner TEXT NOT NULL,
    due TEXT NOT NULL,
    points REAL NOT NULL,
    released_by TEXT NOT NULL,
    released_at TEXT NOT NULL,
    PRIMARY KEY (course, name)
);
CREATE TABLE IF NOT EXISTS grades (
    course TEXT NOT NULL,
    assignment TEXT NOT NULL,
    student TEXT NOT NULL,
    score REAL NOT NULL,
    feedback TEXT NOT NULL,
    graded_by TEXT NOT NULL,
    graded_at TEXT NOT NULL,
    returned_at TEXT,
    returned_commit TEXT,
    PRIMARY KEY (course, assignment, student)
);

-- name: last_event_id
SELECT last_event_id FROM cursor WHERE id = 1;

-- name: set_last_event_id
INSERT INTO cursor (id, last_event_id) VALUES (1, :event_id)
ON CONFLICT (id) DO UPDATE SET last_event_id = excluded.last_event_id;

-- name: project_named
INSERT INTO projects (project_id, owner, name) VALUES (:project_id, :owner, :name)
ON CONFLICT (project_id) DO UPDATE SET owner = excluded.owner, name = excluded.name;

-- name: project_deleted
DELETE FROM projects WHERE project_id = :project_id;

-- name: push_received
INSERT INTO pushes (event_id, project_id, pusher, pusher_kind, pushed_at)
VALUES (:event_id, :project_id, :pusher, :pusher_kind, :pushed_at)
ON CONFLICT (event_id) DO NOTHING;

-- name: submission_pushes
SELECT pushes.pushed_at, pushes.event_id
FROM pushes JOIN projects USING (project_id)
WHERE projects.owner = :student AND projects.name = :project
  AND pushes.pusher_kind = 'user' AND pushes.pusher = :student
ORDER BY pushes.pushed_at;

-- name: project_known
SELECT 1 FROM projects WHERE owner = :owner AND name = :name;

-- name: save_assignment
INSERT INTO assignments (course, name, release_owner, due, points, released_by, released_at)
VALUES (:course, :name, :release_owner, :due, :points, :released_by, :released_at)
ON CONFLICT (course, name) DO UPDATE SET due = excluded.due, points = excluded.points;

-- name: assignments
SELECT course, name, release_owner, due, points, released_by, released_at
FROM assignments WHERE course = :course ORDER BY due, name;

-- name: assignment
SELECT course, name, release_owner, due, points, released_by, released_at
FROM assignments WHERE course = :course AND name = :name;

-- name: save_grade
INSERT INTO grades (course, assignment, student, score, feedback, graded_by, graded_at)
VALUES (:course, :assignment, :student, :score, :feedback, :graded_by, :graded_at)
ON CONFLICT (course, assignment, student) DO UPDATE SET
    score = excluded.score, feedback = excluded.feedback,
    graded_by = excluded.graded_by, graded_at = excluded.graded_at;

-- name: grade
SELECT score, feedback, graded_by, graded_at, returned_at, returned_commit
FROM grades WHERE course = :course AND assignment = :assignment AND student = :student;

-- name: grade_returned
UPDATE grades SET returned_at = :returned_at, returned_commit = :commit
WHERE course = :course AND assignment = :assignment AND student = :student;
