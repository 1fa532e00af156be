-- Queries of the servers and routes projections (projections/servers.py).

-- name: spawn_requested
INSERT INTO servers AS s (user_id, server_name, user_name, display_name, state, options, url,
                          pid, started, reason, token_id, last_position)
VALUES ($1, $2, $3, '', 'spawning', $4::jsonb, NULL, NULL, $5, NULL, $7, $6)
ON CONFLICT (user_id, server_name) DO UPDATE
   SET user_name = excluded.user_name, state = 'spawning', options = excluded.options,
       url = NULL, pid = NULL, started = excluded.started, reason = NULL,
       token_id = excluded.token_id, last_position = excluded.last_position;

-- name: started
UPDATE servers SET state = 'started', pid = $3, url = $4, last_position = $5
 WHERE user_id = $1 AND server_name = $2;

-- name: ready
UPDATE servers SET state = 'ready', url = $3, last_position = $4
 WHERE user_id = $1 AND server_name = $2;

-- name: set_state
UPDATE servers SET state = $3, last_position = $4 WHERE user_id = $1 AND server_name = $2;

-- name: ended
-- Stopped or failed: the process is gone.
UPDATE servers SET state = $3, reason = $4, pid = NULL, url = NULL, last_position = $5
 WHERE user_id = $1 AND server_name = $2;

-- name: remove
DELETE FROM servers WHERE user_id = $1 AND server_name = $2;

-- name: define
INSERT INTO servers (user_id, server_name, user_name, display_name, state, options, url, pid,
                     started, reason, token_id, last_position)
VALUES ($1, $2, $3, $4, 'defined', $5::jsonb, NULL, NULL, NULL, NULL, NULL, $6);

-- name: modify
UPDATE servers SET display_name = $3, options = $4::jsonb, last_position = $5
 WHERE user_id = $1 AND server_name = $2;

-- name: rename
UPDATE servers SET server_name = $3, display_name = $4, options = $5::jsonb, last_position = $6
 WHERE user_id = $1 AND server_name = $2;

-- name: rename_users
-- A run of renames ($1 user ids, $2 new names, in log order): each user's last name wins.
UPDATE servers s SET user_name = r.name
  FROM (SELECT DISTINCT ON (user_id) user_id, name
          FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS r (user_id, name, n)
         ORDER BY user_id, n DESC) r
 WHERE s.user_id = r.user_id;

-- name: forget_user
DELETE FROM servers WHERE user_id = $1;

-- name: route_add
INSERT INTO routes (routespec, target, user_id, user_name, server_name, last_position)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (routespec) DO UPDATE
   SET target = excluded.target, user_id = excluded.user_id, user_name = excluded.user_name,
       server_name = excluded.server_name, last_position = excluded.last_position;

-- name: route_remove
DELETE FROM routes WHERE user_id = $1 AND server_name = $2;

-- name: route_rename_users
-- As rename_users, for the routes.
UPDATE routes t SET user_name = r.name
  FROM (SELECT DISTINCT ON (user_id) user_id, name
          FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS r (user_id, name, n)
         ORDER BY user_id, n DESC) r
 WHERE t.user_id = r.user_id;

-- name: route_forget_user
DELETE FROM routes WHERE user_id = $1;
