-- The proxy's routes, from the routes read model.

-- name: routes
-- The proxy's table: ready servers, and services that have a URL.
SELECT routespec, target, user_id, user_name, server_name, NULL::text AS service
  FROM routes
UNION ALL
SELECT '/services/' || name || '/', url, NULL, NULL, NULL, name
  FROM services WHERE url IS NOT NULL AND url <> ''
 ORDER BY 1;
