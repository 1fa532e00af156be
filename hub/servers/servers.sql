-- Queries of the server lifecycle (hub/servers/manager.py; also hub/api/servers.py and
-- hub/pages/user.py) over the servers projection, and server activity.

-- name: lock_server
-- Serialises decisions about one server across hub processes, for the transaction.
SELECT pg_advisory_xact_lock(hashtextextended($1, 7));

-- name: server
SELECT s.*, a.last_activity
  FROM servers s
  LEFT JOIN server_activity a USING (user_id, server_name)
 WHERE s.user_id = $1 AND s.server_name = $2;

-- name: user_admin
SELECT admin FROM users WHERE user_id = $1;

-- name: pending_spawns
SELECT count(*) FROM servers WHERE state IN ('spawning', 'started');

-- name: server_activity_rename
-- A renamed server keeps its activity (telemetry, moved by the rename itself).
WITH moved AS (DELETE FROM server_activity WHERE user_id = $1 AND server_name = $2
               RETURNING last_activity)
INSERT INTO server_activity (user_id, server_name, last_activity)
SELECT $1, $3, last_activity FROM moved
ON CONFLICT (user_id, server_name) DO UPDATE SET last_activity = excluded.last_activity;

-- name: named_servers
SELECT count(*) FROM servers WHERE user_id = $1 AND server_name <> '';

-- name: live_servers
-- Servers a hub process may own a process of: what a restarted hub re-adopts or cleans up.
SELECT * FROM servers WHERE state IN ('spawning', 'started', 'ready', 'stopping')
 ORDER BY user_name, server_name;

-- name: servers_of_users
-- The servers of these users ($1), all of them or ($2) only active ones, with activity.
SELECT s.*, a.last_activity
  FROM servers s
  LEFT JOIN server_activity a USING (user_id, server_name)
 WHERE s.user_id = ANY($1::uuid[])
   AND (NOT $2::boolean OR s.state IN ('spawning', 'started', 'ready', 'stopping'))
 ORDER BY s.user_id, s.server_name;

-- name: token_exists
SELECT EXISTS (SELECT 1 FROM tokens WHERE token_id = $1);

-- name: server_activity_touch
-- Activity only moves forward.
INSERT INTO server_activity (user_id, server_name, last_activity)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[])
ON CONFLICT (user_id, server_name) DO UPDATE
   SET last_activity = greatest(server_activity.last_activity, excluded.last_activity);

-- name: user_activity_touch
INSERT INTO activity (user_id, server_name, last_activity)
SELECT u, '', t FROM unnest($1::uuid[], $2::timestamptz[]) AS x(u, t)
ON CONFLICT (user_id, server_name) DO UPDATE
   SET last_activity = greatest(activity.last_activity, excluded.last_activity);

-- name: user_groups
SELECT g.name FROM groups g JOIN group_members m USING (group_id) WHERE m.user_id = $1
 ORDER BY g.name;

-- name: spawner_state
-- A JupyterHub spawner's state, as its server's last start recorded it (server.started): read
-- from the log itself, the source the servers read model is built from, so no column is added.
SELECT data -> 'spawner_state' FROM events
 WHERE stream_id = $1 AND event_type = 'server.started'
 ORDER BY stream_version DESC LIMIT 1;

-- name: spawn_token_hash
-- The stored hash of a spawn's token: how a process started but never recorded is recognised.
SELECT hash FROM token_secrets WHERE token_id = $1;
