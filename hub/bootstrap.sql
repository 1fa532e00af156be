-- What bootstrap compares the configuration with: services, roles and their grants.

-- name: services_all
SELECT name, admin, url FROM services ORDER BY name;

-- name: service_tokens
SELECT t.token_id FROM tokens t WHERE t.service = $1;

-- name: roles_all
SELECT name, description, scopes FROM roles ORDER BY name;

-- name: role_grants_all
SELECT role, principal_kind, principal FROM role_grants ORDER BY 1, 2, 3;

-- name: token_secret_by_hash
SELECT token_id FROM token_secrets WHERE hash = $1;
