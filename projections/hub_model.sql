-- Queries of the REST API's projections (projections/groups.py, tokens.py, services.py,
-- roles.py). Each statement applies one event.

-- name: group_create
INSERT INTO groups (group_id, name, properties, created, last_position)
VALUES ($1, $2, $3::jsonb, $4, $5);

-- name: group_delete
WITH gone AS (DELETE FROM groups WHERE group_id = $1)
DELETE FROM group_members WHERE group_id = $1;

-- name: group_add_members
INSERT INTO group_members (group_id, user_id)
SELECT $1, unnest($2::uuid[])
ON CONFLICT DO NOTHING;

-- name: group_remove_members
DELETE FROM group_members WHERE group_id = $1 AND user_id = ANY($2::uuid[]);

-- name: group_set_properties
UPDATE groups SET properties = $2::jsonb, last_position = $3 WHERE group_id = $1;

-- name: group_forget_user
DELETE FROM group_members WHERE user_id = $1;

-- name: token_issue
INSERT INTO tokens (token_id, user_id, service, scopes, note, expires_at, created, last_position,
                    oauth_client)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9);

-- name: tokens_issue_run
-- A run of token.issued events, in log order, in one statement (the tokens of a batch of
-- concurrent appends, events/group_commit.py): $1 token ids, $2 user ids, $3 services,
-- $4 scopes (each a JSON array of strings, as a row of arrays cannot be an array of arrays),
-- $5 notes, $6 expiries, $7 the events' times, $8 their positions, $9 OAuth clients. As
-- token_issue, one row each.
INSERT INTO tokens (token_id, user_id, service, scopes, note, expires_at, created, last_position,
                    oauth_client)
SELECT r.token_id, r.user_id, r.service,
       ARRAY(SELECT e.scope FROM jsonb_array_elements_text(r.scopes) WITH ORDINALITY
                                 AS e(scope, n) ORDER BY e.n),
       r.note, r.expires_at, r.created, r.position, r.oauth_client
  FROM unnest($1::text[], $2::uuid[], $3::text[], $4::jsonb[], $5::text[], $6::timestamptz[],
              $7::timestamptz[], $8::bigint[], $9::text[])
           AS r(token_id, user_id, service, scopes, note, expires_at, created, position,
                oauth_client);

-- name: token_revoke
DELETE FROM tokens WHERE token_id = $1;

-- name: token_forget_user
DELETE FROM tokens WHERE user_id = $1;

-- name: service_register
INSERT INTO services (name, admin, url, created, last_position)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (name) DO UPDATE
   SET admin = excluded.admin, url = excluded.url, last_position = excluded.last_position;

-- name: service_moved
-- A managed service started on a port the hub picked.
UPDATE services SET url = $2, last_position = $3 WHERE name = $1 AND url IS DISTINCT FROM $2;

-- name: service_remove
DELETE FROM services WHERE name = $1;

-- name: token_forget_service
DELETE FROM tokens WHERE service = $1;

-- name: token_forget_client
-- An OAuth client removed takes the tokens issued to it along (JupyterHub cascades too).
DELETE FROM tokens WHERE oauth_client = $1;

-- name: role_define
INSERT INTO roles (name, description, scopes, last_position)
VALUES ($1, $2, $3, $4)
ON CONFLICT (name) DO UPDATE
   SET description = excluded.description, scopes = excluded.scopes,
       last_position = excluded.last_position;

-- name: role_remove
WITH gone AS (DELETE FROM roles WHERE name = $1)
DELETE FROM role_grants WHERE role = $1;

-- name: role_grant
INSERT INTO role_grants (role, principal_kind, principal) VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING;

-- name: role_revoke
DELETE FROM role_grants WHERE role = $1 AND principal_kind = $2 AND principal = $3;

-- name: role_forget_user
DELETE FROM role_grants WHERE principal_kind = 'user' AND principal = $1::uuid::text;

-- name: role_forget_group
DELETE FROM role_grants WHERE principal_kind = 'group' AND principal = $1::uuid::text;

-- name: role_forget_service
DELETE FROM role_grants WHERE principal_kind = 'service' AND principal = $1;
