-- Which hub process runs each collaboration session (issue 20): a session's kernel lives in
-- the process that opened it, and another process asked about the session forwards the
-- request there (hub/api/collab_forward.py). Process state, not a hub action: kept outside
-- the event log, as login failures are. ``origin`` is where other hub processes reach the
-- owner's HTTP API (scheme://host:port).
CREATE TABLE collab_session_owners (
    session_id uuid PRIMARY KEY,
    room       text NOT NULL,
    origin     text NOT NULL,
    claimed    timestamptz NOT NULL DEFAULT clock_timestamp()
);
