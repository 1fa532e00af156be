-- Leases on collaboration sessions (hub/api/collab_lease.py).

-- name: lease_renew
-- This process's running sessions: their leases run on; the ids returned are those it still
-- owns (one missing was taken over while this process did not renew: it must stop it).
UPDATE collab_session_owners
   SET lease_until = clock_timestamp() + make_interval(secs => $3)
 WHERE origin = $1 AND incarnation = $4 AND session_id = ANY($2::uuid[])
RETURNING session_id;

-- name: lease_drop_ended
-- Sessions of this process that ended here (their grace period passed): nobody owns them.
DELETE FROM collab_session_owners
 WHERE origin = $1 AND incarnation = $3 AND session_id = ANY($2::uuid[]);

-- name: lease_take_one
-- Take over one session whose owner's lease expired (the row lock makes one process win).
UPDATE collab_session_owners
   SET origin = $2, incarnation = $4, lease_until = clock_timestamp() + make_interval(secs => $3),
       claimed = clock_timestamp()
 WHERE session_id = $1 AND lease_until <= clock_timestamp() AND created_by IS NOT NULL
RETURNING session_id, room, kernel_name, created_by_kind, created_by, created_by_id, room_owner;

-- name: lease_take_expired
-- Take over up to $3 sessions whose owners' leases expired, skipping those another process
-- is taking right now.
UPDATE collab_session_owners
   SET origin = $1, incarnation = $4, lease_until = clock_timestamp() + make_interval(secs => $2),
       claimed = clock_timestamp()
 WHERE session_id IN (SELECT session_id FROM collab_session_owners
                       WHERE lease_until <= clock_timestamp() AND created_by IS NOT NULL
                       ORDER BY lease_until LIMIT $3
                       FOR UPDATE SKIP LOCKED)
RETURNING session_id, room, kernel_name, created_by_kind, created_by, created_by_id, room_owner;

-- name: lease_creator_user
-- A session's creator, by id, as they are now (renamed or not); no row: deleted.
SELECT name, admin FROM users WHERE user_id = $1;
