-- Queries of the OAuth provider and its clients (hub/auth/oauth/provider.py, clients.py).

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
