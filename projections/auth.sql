-- Queries of the OAuth client and signup projections (projections/auth.py).

-- name: client_register
INSERT INTO oauth_clients (client_id, kind, owner, server_name, redirect_uri, token_id,
                           description, no_confirm, allowed_scopes, last_position)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (client_id) DO UPDATE
   SET kind = excluded.kind, owner = excluded.owner, server_name = excluded.server_name,
       redirect_uri = excluded.redirect_uri, token_id = excluded.token_id,
       description = excluded.description, no_confirm = excluded.no_confirm,
       allowed_scopes = excluded.allowed_scopes, last_position = excluded.last_position;

-- name: client_remove
WITH gone AS (DELETE FROM oauth_clients WHERE client_id = $1)
DELETE FROM oauth_grants WHERE client_id = $1;

-- name: client_forget_service
WITH gone AS (DELETE FROM oauth_clients WHERE kind = 'service' AND owner = $1
              RETURNING client_id)
DELETE FROM oauth_grants WHERE client_id IN (SELECT client_id FROM gone);

-- name: client_forget_user
WITH gone AS (DELETE FROM oauth_clients WHERE kind = 'server' AND owner = $2
              RETURNING client_id),
     grants AS (DELETE FROM oauth_grants WHERE client_id IN (SELECT client_id FROM gone))
DELETE FROM oauth_grants WHERE user_id = $1;

-- name: grant_add
-- The scopes a user approved for a client only grow (a new approval adds to them).
INSERT INTO oauth_grants (user_id, client_id, scopes) VALUES ($1, $2, $3)
ON CONFLICT (user_id, client_id) DO UPDATE
   SET scopes = ARRAY(SELECT DISTINCT s FROM unnest(oauth_grants.scopes || excluded.scopes) s
                       ORDER BY s);

-- name: signup_request
INSERT INTO signup_requests (name, request_id, requested, last_position)
VALUES ($1, $2, $3, $4)
ON CONFLICT (name) DO UPDATE
   SET request_id = excluded.request_id, requested = excluded.requested,
       last_position = excluded.last_position;

-- name: signup_close
DELETE FROM signup_requests WHERE name = $1 AND request_id = $2;
