-- Servers other hub processes started (hub/servers/watch_others.py).

-- name: ready_servers_everywhere
-- Every ready server, whichever process started it (the servers_active index covers it).
SELECT user_id, server_name, user_name, pid, token_id
  FROM servers WHERE state = 'ready' ORDER BY user_name, server_name;
