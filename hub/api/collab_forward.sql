-- name: claim
INSERT INTO collab_session_owners (session_id, room, origin) VALUES ($1, $2, $3)
    ON CONFLICT (session_id) DO UPDATE SET room = excluded.room, origin = excluded.origin,
                                           claimed = clock_timestamp();

-- name: owner
SELECT origin FROM collab_session_owners WHERE session_id = $1;

-- name: release_session
DELETE FROM collab_session_owners WHERE session_id = $1;

-- name: release_gone
-- Only the row that still names the owner that did not answer.
DELETE FROM collab_session_owners WHERE session_id = $1 AND origin = $2;

-- name: release_owned
DELETE FROM collab_session_owners WHERE origin = $1;
