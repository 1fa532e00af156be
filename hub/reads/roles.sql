-- The roles read model (hub/reads/roles.py).

-- name: role_by_name
SELECT name, description, scopes FROM roles WHERE name = $1;
