-- Queries of login, browser sessions and the OAuth provider (hub/credentials.py,
-- hub/sessions.py, hub/login_throttle.py, hub/oauth_provider.py, hub/oauth_clients.py,
-- hub/signups.py).

-- name: credential_get
SELECT password_hash FROM credentials WHERE user_id = $1;

-- name: credential_set
INSERT INTO credentials (user_id, password_hash, updated) VALUES ($1, $2, $3)
ON CONFLICT (user_id) DO UPDATE
   SET password_hash = excluded.password_hash, updated = excluded.updated;

-- name: credential_delete
DELETE FROM credentials WHERE user_id = $1;

-- name: signup_credential_set
INSERT INTO signup_credentials (name, password_hash) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash;

-- name: signup_credential_take
DELETE FROM signup_credentials WHERE name = $1 RETURNING password_hash;

-- name: signup_pending
SELECT name, request_id, requested FROM signup_requests WHERE name = $1;

-- name: signups_all
SELECT name, request_id, requested FROM signup_requests ORDER BY requested, name;

-- name: failures_get
SELECT key, failures, window_start, locked_until FROM login_failures WHERE key = ANY($1::text[]);

-- name: failures_lock
SELECT key, failures, window_start, locked_until FROM login_failures WHERE key = ANY($1::text[])
   FOR UPDATE;

-- name: failures_put
INSERT INTO login_failures (key, failures, window_start, locked_until) VALUES ($1, $2, $3, $4)
ON CONFLICT (key) DO UPDATE
   SET failures = excluded.failures, window_start = excluded.window_start,
       locked_until = excluded.locked_until;

-- name: failures_clear
DELETE FROM login_failures WHERE key = $1;

-- name: session_create
INSERT INTO login_sessions (session_id, hash, user_id, created, expires_at)
VALUES ($1, $2, $3, $4, $5);

-- name: session_user
-- The user of a live browser session (none once it expired, ended, or the user was deleted).
SELECT s.session_id, u.user_id, u.name, u.admin,
       coalesce((SELECT array_agg(gr.name ORDER BY gr.name)
                   FROM group_members m JOIN groups gr USING (group_id)
                  WHERE m.user_id = u.user_id), '{}') AS groups
  FROM login_sessions s JOIN users u USING (user_id)
 WHERE s.hash = $1 AND s.expires_at > clock_timestamp();

-- name: session_delete
DELETE FROM login_sessions WHERE session_id = $1 RETURNING user_id;

-- name: sessions_end_others
DELETE FROM login_sessions WHERE user_id = $1 AND session_id <> coalesce($2, '')
RETURNING session_id;

-- name: sessions_purge
DELETE FROM login_sessions WHERE expires_at <= clock_timestamp();

-- name: client_get
SELECT client_id, kind, owner, server_name, redirect_uri, token_id, description, no_confirm,
       allowed_scopes
  FROM oauth_clients WHERE client_id = $1;

-- name: clients_all
SELECT client_id, kind, owner, server_name, redirect_uri, token_id, description, no_confirm,
       allowed_scopes
  FROM oauth_clients ORDER BY client_id;

-- name: client_secret_matches
-- Whether a client secret is the API token the client authenticates with: any live token of
-- the service, or the one token the spawner gave the server.
SELECT EXISTS (
    SELECT 1
      FROM token_secrets k JOIN tokens t USING (token_id)
     WHERE k.hash = $2
       AND (t.expires_at IS NULL OR t.expires_at > clock_timestamp())
       AND ((c.kind = 'service' AND t.service = c.owner)
            OR (c.kind = 'server' AND t.token_id = c.token_id)))
  FROM oauth_clients c WHERE c.client_id = $1;

-- name: grant_get
SELECT scopes FROM oauth_grants WHERE user_id = $1 AND client_id = $2;

-- name: code_create
INSERT INTO oauth_codes (code_id, hash, client_id, user_id, redirect_uri, scopes,
                         code_challenge, code_challenge_method, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9);

-- name: code_purge_expired
DELETE FROM oauth_codes WHERE expires_at <= clock_timestamp();

-- name: code_take
-- A code is used once: whoever deletes it exchanges it; a second attempt finds nothing.
DELETE FROM oauth_codes c
 USING users u
 WHERE c.hash = $1 AND u.user_id = c.user_id
RETURNING c.code_id, c.client_id, c.user_id, u.name AS user_name, u.admin AS user_admin,
          c.redirect_uri, c.scopes, c.code_challenge, c.code_challenge_method,
          c.expires_at, clock_timestamp() AS now;
