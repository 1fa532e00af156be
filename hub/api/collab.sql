-- name: service_role_scopes
-- A service's admin flag and the scopes of its roles (None when there is no such service).
SELECT s.admin,
       coalesce((SELECT array_agg(scope)
                   FROM role_grants g JOIN roles r ON r.name = g.role, unnest(r.scopes) scope
                  WHERE g.principal_kind = 'service' AND g.principal = s.name), '{}') AS scopes
  FROM services s
 WHERE s.name = $1;
