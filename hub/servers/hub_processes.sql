-- The live hub processes and their claims on servers (hub/servers/hub_processes.py).

-- name: process_renew
-- This process is live for $4 seconds more (its row written again if it was lost).
INSERT INTO hub_processes (process_id, host, pid, lease_until)
VALUES ($1, $2, $3, clock_timestamp() + make_interval(secs => $4))
ON CONFLICT (process_id) DO UPDATE SET lease_until = EXCLUDED.lease_until;

-- name: processes_here
-- The processes recorded on this machine (host name, boot and pid namespace), to check their
-- pids.
SELECT process_id, pid FROM hub_processes WHERE host = $1;

-- name: processes_forget_stale
-- Processes that died long ago (their leases expired a day ago): no longer worth a row.
DELETE FROM hub_processes WHERE lease_until < clock_timestamp() - interval '1 day';

-- name: process_lock
-- Processes leave one at a time (taken in the transaction that deletes this process's row and
-- then counts the others, each statement with its own snapshot), so that of processes
-- stopping at once exactly the last one sees none left.
SELECT pg_advisory_xact_lock(hashtext('chronohub hub_processes'));

-- name: process_leave
DELETE FROM hub_processes WHERE process_id = $1;

-- name: others_live
-- How many processes other than this one ($1) are live.
SELECT count(*) FROM hub_processes WHERE process_id <> $1 AND lease_until > clock_timestamp();

-- name: server_claim
-- This process ($3) runs the spawn or stop of this server now.
INSERT INTO server_claims (user_id, server_name, process_id) VALUES ($1, $2, $3)
ON CONFLICT (user_id, server_name)
DO UPDATE SET process_id = EXCLUDED.process_id, claimed = clock_timestamp();

-- name: take_orphaned
-- Servers in a passing state whose claimant is not live (dead, stopped, or none recorded):
-- claimed by this process ($1). The row lock of ON CONFLICT makes one process win each.
INSERT INTO server_claims (user_id, server_name, process_id)
SELECT s.user_id, s.server_name, $1
  FROM servers s
 WHERE s.state IN ('spawning', 'started', 'stopping')
   AND NOT EXISTS (SELECT 1 FROM server_claims c JOIN hub_processes p USING (process_id)
                    WHERE c.user_id = s.user_id AND c.server_name = s.server_name
                      AND p.lease_until > clock_timestamp())
ON CONFLICT (user_id, server_name)
DO UPDATE SET process_id = EXCLUDED.process_id, claimed = clock_timestamp()
 WHERE NOT EXISTS (SELECT 1 FROM hub_processes p
                    WHERE p.process_id = server_claims.process_id
                      AND p.lease_until > clock_timestamp())
RETURNING user_id, server_name;

-- name: server_fence
-- Who runs this server's spawn or stop now, and what the log says of the server: the claim's
-- row locked until the transaction ends, so no takeover slips between this check and the step
-- recorded after it (take_orphaned's upsert waits for the lock).
SELECT c.process_id, s.token_id, s.pid, s.state
  FROM server_claims c JOIN servers s USING (user_id, server_name)
 WHERE c.user_id = $1 AND c.server_name = $2
   FOR UPDATE OF c;
