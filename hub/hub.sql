-- Read queries of the REST API (hub/*.py), over the projections' tables.

-- name: token_owner
-- Who a token belongs to, if it exists and has not expired, with everything needed to work
-- out its scopes: the lookup of every request, in one round trip.
SELECT t.token_id, t.user_id, t.service, t.scopes,
       u.name AS user_name, u.admin AS user_admin, s.admin AS service_admin,
       coalesce((SELECT array_agg(gr.name ORDER BY gr.name)
                   FROM group_members m JOIN groups gr USING (group_id)
                  WHERE m.user_id = t.user_id), '{}') AS groups,
       coalesce((SELECT array_agg(DISTINCT g.role ORDER BY g.role)
                   FROM role_grants g
                  WHERE (g.principal_kind = 'user' AND g.principal = t.user_id::text)
                     OR (g.principal_kind = 'service' AND g.principal = t.service)), '{}')
           AS role_names,
       coalesce((SELECT array_agg(scope)
                   FROM role_grants g JOIN roles r ON r.name = g.role, unnest(r.scopes) scope
                  WHERE (g.principal_kind = 'user' AND g.principal = t.user_id::text)
                     OR (g.principal_kind = 'service' AND g.principal = t.service)
                     OR (g.principal_kind = 'group' AND g.principal IN (
                            SELECT group_id::text FROM group_members
                             WHERE user_id = t.user_id))), '{}') AS role_scopes
  FROM token_secrets k
  JOIN tokens t USING (token_id)
  LEFT JOIN users u ON u.user_id = t.user_id
  LEFT JOIN services s ON s.name = t.service
 WHERE k.hash = $1
   AND (t.expires_at IS NULL OR t.expires_at > clock_timestamp());

-- name: token_store_secret
INSERT INTO token_secrets (token_id, prefix, hash) VALUES ($1, $2, $3);

-- name: token_touch
INSERT INTO token_activity (token_id, last_activity) VALUES ($1, $2)
ON CONFLICT (token_id) DO UPDATE SET last_activity = greatest(token_activity.last_activity,
                                                              excluded.last_activity);

-- name: user_role_scopes
-- Every scope a user holds through roles granted to them or to their groups.
SELECT r.scopes
  FROM role_grants g JOIN roles r ON r.name = g.role
 WHERE (g.principal_kind = 'user' AND g.principal = $1::uuid::text)
    OR (g.principal_kind = 'group' AND g.principal IN (
            SELECT group_id::text FROM group_members WHERE user_id = $1::uuid));

-- name: user_role_names
SELECT DISTINCT g.role
  FROM role_grants g
 WHERE g.principal_kind = 'user' AND g.principal = $1::uuid::text
 ORDER BY 1;

-- name: any_admin
SELECT EXISTS (SELECT 1 FROM users WHERE admin);

-- name: user_by_name
SELECT u.user_id, u.name, u.admin, u.created,
       (SELECT max(a.last_activity) FROM activity a WHERE a.user_id = u.user_id) AS last_activity,
       coalesce((SELECT array_agg(gr.name ORDER BY gr.name)
                   FROM group_members m JOIN groups gr USING (group_id)
                  WHERE m.user_id = u.user_id), '{}') AS groups,
       coalesce((SELECT array_agg(DISTINCT g.role ORDER BY g.role)
                   FROM role_grants g
                  WHERE g.principal_kind = 'user' AND g.principal = u.user_id::text), '{}')
           AS roles
  FROM users u
 WHERE u.name = $1;

-- name: users_by_name
SELECT user_id, name, admin FROM users WHERE name = ANY($1::text[]);

-- name: users_page
-- Users, $1 offset, $2 limit, $3 name substring (ILIKE), $4 only these names (a filtered
-- list scope), $5 state: NULL, 'active' (some server running or pending), 'ready' (some
-- server ready) or 'inactive' (no server active), $6 sort: id (creation order,
-- JupyterHub's default) or name, '-' before it for descending. The page is cut first, so
-- groups, roles and activity are looked up for its rows only.
SELECT p.user_id, p.name, p.admin, p.created, p.total,
       (SELECT max(a.last_activity) FROM activity a WHERE a.user_id = p.user_id) AS last_activity,
       coalesce((SELECT array_agg(gr.name ORDER BY gr.name)
                   FROM group_members m JOIN groups gr USING (group_id)
                  WHERE m.user_id = p.user_id), '{}') AS groups,
       coalesce((SELECT array_agg(DISTINCT g.role ORDER BY g.role)
                   FROM role_grants g
                  WHERE g.principal_kind = 'user' AND g.principal = p.user_id::text), '{}')
           AS roles
  FROM (SELECT u.*, count(*) OVER () AS total
          FROM users u
         WHERE ($3::text IS NULL OR u.name ILIKE '%' || $3::text || '%')
           AND ($4::text[] IS NULL OR u.name = ANY($4::text[]))
           AND ($5::text IS NULL OR ($5::text = 'inactive') <> EXISTS (
                    SELECT 1 FROM servers s WHERE s.user_id = u.user_id
                       AND s.state = ANY(CASE WHEN $5::text = 'ready' THEN '{ready}'::text[]
                                         ELSE '{spawning,started,ready,stopping}'::text[] END)))
         ORDER BY CASE WHEN $6::text = 'name' THEN u.name END,
                  CASE WHEN $6::text = '-name' THEN u.name END DESC,
                  CASE WHEN $6::text = '-id' THEN u.created END DESC,
                  u.created, u.name
        OFFSET $1 LIMIT $2) p
 ORDER BY CASE WHEN $6::text = 'name' THEN p.name END,
          CASE WHEN $6::text = '-name' THEN p.name END DESC,
          CASE WHEN $6::text = '-id' THEN p.created END DESC,
          p.created, p.name;

-- name: users_page_by_activity
-- As users_page, sorted by last activity ($6 'last_activity' or '-last_activity'; users
-- without activity last).
SELECT p.user_id, p.name, p.admin, p.created, p.total, p.last_activity,
       coalesce((SELECT array_agg(gr.name ORDER BY gr.name)
                   FROM group_members m JOIN groups gr USING (group_id)
                  WHERE m.user_id = p.user_id), '{}') AS groups,
       coalesce((SELECT array_agg(DISTINCT g.role ORDER BY g.role)
                   FROM role_grants g
                  WHERE g.principal_kind = 'user' AND g.principal = p.user_id::text), '{}')
           AS roles
  FROM (SELECT u.*, act.last_activity, count(*) OVER () AS total
          FROM users u
          LEFT JOIN LATERAL (SELECT max(a.last_activity) AS last_activity
                               FROM activity a WHERE a.user_id = u.user_id) act ON true
         WHERE ($3::text IS NULL OR u.name ILIKE '%' || $3::text || '%')
           AND ($4::text[] IS NULL OR u.name = ANY($4::text[]))
           AND ($5::text IS NULL OR ($5::text = 'inactive') <> EXISTS (
                    SELECT 1 FROM servers s WHERE s.user_id = u.user_id
                       AND s.state = ANY(CASE WHEN $5::text = 'ready' THEN '{ready}'::text[]
                                         ELSE '{spawning,started,ready,stopping}'::text[] END)))
         ORDER BY CASE WHEN $6::text = 'last_activity' THEN act.last_activity END NULLS LAST,
                  CASE WHEN $6::text = '-last_activity' THEN act.last_activity END DESC NULLS LAST,
                  u.created, u.name
        OFFSET $1 LIMIT $2) p
 ORDER BY CASE WHEN $6::text = 'last_activity' THEN p.last_activity END NULLS LAST,
          CASE WHEN $6::text = '-last_activity' THEN p.last_activity END DESC NULLS LAST,
          p.created, p.name;

-- name: users_count
SELECT count(*) FROM users u
 WHERE ($1::text IS NULL OR u.name ILIKE '%' || $1::text || '%')
   AND ($2::text[] IS NULL OR u.name = ANY($2::text[]))
   AND ($3::text IS NULL OR ($3::text = 'inactive') <> EXISTS (
            SELECT 1 FROM servers s WHERE s.user_id = u.user_id
               AND s.state = ANY(CASE WHEN $3::text = 'ready' THEN '{ready}'::text[]
                                 ELSE '{spawning,started,ready,stopping}'::text[] END)));

-- name: group_by_name
SELECT gr.group_id, gr.name, gr.properties::text AS properties,
       coalesce((SELECT array_agg(u.name ORDER BY u.name)
                   FROM group_members m JOIN users u USING (user_id)
                  WHERE m.group_id = gr.group_id), '{}') AS users,
       coalesce((SELECT array_agg(DISTINCT g.role ORDER BY g.role)
                   FROM role_grants g
                  WHERE g.principal_kind = 'group' AND g.principal = gr.group_id::text), '{}')
           AS roles
  FROM groups gr
 WHERE gr.name = $1;

-- name: groups_page
SELECT gr.group_id, gr.name, gr.properties::text AS properties,
       coalesce((SELECT array_agg(u.name ORDER BY u.name)
                   FROM group_members m JOIN users u USING (user_id)
                  WHERE m.group_id = gr.group_id), '{}') AS users,
       coalesce((SELECT array_agg(DISTINCT g.role ORDER BY g.role)
                   FROM role_grants g
                  WHERE g.principal_kind = 'group' AND g.principal = gr.group_id::text), '{}')
           AS roles,
       count(*) OVER () AS total
  FROM groups gr
 WHERE ($3::text[] IS NULL OR gr.name = ANY($3::text[]))
 ORDER BY gr.name
OFFSET $1 LIMIT $2;

-- name: groups_count
SELECT count(*) FROM groups gr WHERE ($1::text[] IS NULL OR gr.name = ANY($1::text[]));

-- name: groups_by_name
SELECT group_id, name FROM groups WHERE name = ANY($1::text[]);

-- name: group_member_ids
SELECT user_id FROM group_members WHERE group_id = $1;

-- name: group_member_names
-- The members of the named groups: resolves !group= filters.
SELECT gr.name AS group_name, u.name AS user_name
  FROM groups gr JOIN group_members m USING (group_id) JOIN users u USING (user_id)
 WHERE gr.name = ANY($1::text[]);

-- name: user_tokens
-- oauth_client_name: the client's description, as JupyterHub shows it (null: an API token).
SELECT t.token_id, t.scopes, t.note, t.expires_at, t.created, a.last_activity, t.oauth_client,
       coalesce(c.description, t.oauth_client) AS oauth_client_name
  FROM tokens t LEFT JOIN token_activity a USING (token_id)
  LEFT JOIN oauth_clients c ON c.client_id = t.oauth_client
 WHERE t.user_id = $1
   AND (t.expires_at IS NULL OR t.expires_at > clock_timestamp())
 ORDER BY t.created, t.token_id;

-- name: user_token
SELECT t.token_id, t.scopes, t.note, t.expires_at, t.created, a.last_activity, t.oauth_client,
       coalesce(c.description, t.oauth_client) AS oauth_client_name
  FROM tokens t LEFT JOIN token_activity a USING (token_id)
  LEFT JOIN oauth_clients c ON c.client_id = t.oauth_client
 WHERE t.user_id = $1 AND t.token_id = $2
   AND (t.expires_at IS NULL OR t.expires_at > clock_timestamp());

-- name: user_client_tokens
-- The user's tokens issued to one OAuth client.
SELECT token_id FROM tokens WHERE user_id = $1 AND oauth_client = $2 ORDER BY created, token_id;

-- name: activity_touch
-- Activity only moves forward.
INSERT INTO activity (user_id, server_name, last_activity) VALUES ($1, $2, $3)
ON CONFLICT (user_id, server_name) DO UPDATE
   SET last_activity = greatest(activity.last_activity, excluded.last_activity);

-- name: activity_touch_unless_server_token
-- A user's activity from API use with token $2, unless that is a server's own token: a
-- server's API calls are not its user's activity (JupyterHub does not count them either).
INSERT INTO activity (user_id, server_name, last_activity)
SELECT $1, '', $3
 WHERE NOT EXISTS (SELECT 1 FROM servers WHERE token_id = $2)
ON CONFLICT (user_id, server_name) DO UPDATE
   SET last_activity = greatest(activity.last_activity, excluded.last_activity);

-- name: services_all
SELECT name, admin, url FROM services ORDER BY name;

-- name: service_tokens
SELECT t.token_id FROM tokens t WHERE t.service = $1;

-- name: role_by_name
SELECT name, description, scopes FROM roles WHERE name = $1;

-- name: roles_all
SELECT name, description, scopes FROM roles ORDER BY name;

-- name: role_grants_all
SELECT role, principal_kind, principal FROM role_grants ORDER BY 1, 2, 3;

-- name: token_secret_by_hash
SELECT token_id FROM token_secrets WHERE hash = $1;

-- name: groups_of_users
SELECT u.name AS user_name, g.name AS group_name
  FROM users u JOIN group_members m USING (user_id) JOIN groups g USING (group_id)
 WHERE u.name = ANY($1::text[]);
