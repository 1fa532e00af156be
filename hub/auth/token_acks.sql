-- Queries of hub/auth/token_acks.py: the token caches' membership and acknowledgements
-- (migrations/0021_token_cache_acknowledgements.sql explains the numbering).

-- name: member_join
-- Under the invalidating commits' advisory lock (the trigger's key): every notification
-- numbered up to last_value has been committed (or rolled back), so a cache emptied after
-- this returns may acknowledge all of them.
SELECT pg_advisory_xact_lock(7266117215243641),
       (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM chronohub_auth_seq);

-- name: member_register
INSERT INTO token_cache_members (member, seen, alive_until)
VALUES ($1, $2, now() + make_interval(secs => $3))
ON CONFLICT (member) DO UPDATE
   SET seen = greatest(token_cache_members.seen, excluded.seen),
       alive_until = excluded.alive_until;

-- name: member_renew
-- The heartbeat and the acknowledgement in one statement; rows that expired (a process
-- that died or stopped answering) are deleted on the way. No row back: this member's own
-- row was deleted (it lapsed), and it must join again.
WITH expired AS (
    DELETE FROM token_cache_members WHERE alive_until < now() AND member <> $1
)
UPDATE token_cache_members
   SET seen = greatest(seen, $2), alive_until = now() + make_interval(secs => $3)
 WHERE member = $1 AND alive_until >= now()
RETURNING member;

-- name: member_leave
DELETE FROM token_cache_members WHERE member = $1;

-- name: member_waiting_for
-- After a request committed an invalidating event: the number to wait for (the last one
-- drawn, its own or a later one) and the live members, other than the asking one, that have
-- not handled it yet.
SELECT n, ARRAY(SELECT member FROM token_cache_members
                 WHERE alive_until > now() AND member <> $1 AND seen < n
                 ORDER BY member) AS pending
  FROM (SELECT last_value AS n FROM chronohub_auth_seq) AS s;

-- name: member_progress
-- Of the members still waited for: each one's acknowledgement and lease (a member missing
-- here left or expired and was deleted).
SELECT member, seen >= $2 AS acknowledged, alive_until > now() AS alive
  FROM token_cache_members WHERE member = ANY($1::text[]);
