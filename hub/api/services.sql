-- The services API (hub/api/services.py): the services read model with the roles each holds.

-- name: services_with_roles
SELECT s.name, s.admin, s.url,
       ARRAY(SELECT g.role FROM role_grants g
              WHERE g.principal_kind = 'service' AND g.principal = s.name
              ORDER BY g.role) AS roles
  FROM services s
 ORDER BY s.name;

-- name: service_by_name
SELECT s.name, s.admin, s.url,
       ARRAY(SELECT g.role FROM role_grants g
              WHERE g.principal_kind = 'service' AND g.principal = s.name
              ORDER BY g.role) AS roles
  FROM services s
 WHERE s.name = $1;
