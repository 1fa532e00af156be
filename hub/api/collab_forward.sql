-- name: claim
-- The lease starts with the claim; $4-$7, $10: what a process taking the session over needs
-- ($10: the creator's user id; NULL for a service).
INSERT INTO collab_session_owners
    (session_id, room, origin, incarnation, lease_until, kernel_name, created_by_kind,
     created_by, created_by_id, room_owner)
    VALUES ($1, $2, $3, $9, clock_timestamp() + make_interval(secs => $8), $4, $5, $6, $10, $7)
    ON CONFLICT (session_id) DO UPDATE SET room = excluded.room, origin = excluded.origin,
        incarnation = excluded.incarnation,
        lease_until = excluded.lease_until, kernel_name = excluded.kernel_name,
        created_by_kind = excluded.created_by_kind, created_by = excluded.created_by,
        created_by_id = excluded.created_by_id,
        room_owner = excluded.room_owner, claimed = clock_timestamp();

-- name: owner
-- Its owner, whether the owner's lease runs (and for how many more seconds), and whether
-- another process could take it over (rows claimed before leases cannot).
SELECT origin, incarnation,
       lease_until > clock_timestamp() AS leased,
       greatest(extract(epoch FROM lease_until - clock_timestamp()), 0)::float8 AS lease_left_s,
       created_by IS NOT NULL AS takeable
  FROM collab_session_owners WHERE session_id = $1;

-- name: release_session
-- Only while this process ($2, $3) owns it: a copy that lost its lease must not delete the
-- row of the process that took the session over.
DELETE FROM collab_session_owners WHERE session_id = $1 AND origin = $2 AND incarnation = $3;

-- name: release_gone
-- Only the row that still names the owner that did not answer.
DELETE FROM collab_session_owners WHERE session_id = $1 AND origin = $2;

-- name: release_owned
DELETE FROM collab_session_owners WHERE origin = $1 AND incarnation = $2;

-- name: live_origins
-- The other processes ($1: this one) that hold a live lease on a session (sessions list).
SELECT DISTINCT origin FROM collab_session_owners
 WHERE origin <> $1 AND lease_until > clock_timestamp() ORDER BY origin;
