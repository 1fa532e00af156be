-- The users read model (hub/reads/users.py): the users API's, the admin page's, login's and
-- bootstrap's reads of users.

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

-- name: group_member_names
-- The members of the named groups: resolves !group= filters.
SELECT gr.name AS group_name, u.name AS user_name
  FROM groups gr JOIN group_members m USING (group_id) JOIN users u USING (user_id)
 WHERE gr.name = ANY($1::text[]);

-- name: users_page_json
-- A page of every user ($1 offset, $2 limit) in the default order (creation, then name), the
-- page's user models built here as one JSON array (JupyterHub's user model, the keys in $3
-- left out: those the caller's scopes do not reveal), so that the hub sends it on without
-- decoding it: the items (UTF-8 bytes), how many, the total, and the ids of the page's users
-- with servers to show ($4: stopped ones too), whose server fields the hub adds itself
-- (hub/api/users.py).
-- The page is read from an index (users_created) down to where it ends, instead of every
-- user sorted at each request. No filters, one order, and the page's rows passed on as an
-- array (whose size the planner guesses without the parameters): PostgreSQL then keeps one
-- generic plan for the prepared statement. Otherwise the generic plan's estimate grew with
-- its guess at the page size (a LIMIT by parameter), it planned every request afresh, and
-- planning cost half as much again as running it. Groups, roles, activity and servers are
-- joined to the page as sets, not looked up per user (a fifth less of PostgreSQL's time).
-- Each model is written as text, key by key, in the order and with the separators of
-- json.dumps(..., ensure_ascii=False) of hub/api/users.py's render. Not byte for byte what
-- the hub's json_response sends for one user: that escapes non-ASCII characters
-- (ensure_ascii=True), this sends them as UTF-8; both are valid JSON of the same data.
-- Building jsonb objects and
-- removing the hidden keys from them cost PostgreSQL a third more per page (measured: about
-- 500 against 345 µs of CPU for 50 users). Values are encoded by to_json (strings, escaped)
-- or are literals, booleans and ISO timestamps, none of which needs escaping.
WITH page AS (
    SELECT p.user_id, p.name, p.admin, p.created, p.ordinality AS n
      FROM unnest(ARRAY(SELECT u FROM users u ORDER BY u.created, u.name OFFSET $1 LIMIT $2))
           WITH ORDINALITY AS p
), grp AS (
    SELECT m.user_id, array_agg(gr.name ORDER BY gr.name) AS names
      FROM group_members m JOIN groups gr USING (group_id)
     WHERE m.user_id IN (SELECT user_id FROM page)
     GROUP BY m.user_id
), rol AS (
    SELECT g.principal, array_agg(g.role) AS roles
      FROM role_grants g
     WHERE g.principal_kind = 'user' AND g.principal IN (SELECT user_id::text FROM page)
     GROUP BY g.principal
), act AS (
    SELECT a.user_id, max(a.last_activity) AS last_activity
      FROM activity a WHERE a.user_id IN (SELECT user_id FROM page)
     GROUP BY a.user_id
), srv AS (
    SELECT DISTINCT s.user_id FROM servers s
     WHERE s.user_id IN (SELECT user_id FROM page)
       AND ($4::boolean OR s.state IN ('spawning', 'started', 'ready', 'stopping'))
), models AS (
    SELECT p.n, p.user_id, srv.user_id IS NOT NULL AS with_servers,
           '{' || concat_ws(', ',
               CASE WHEN 'kind' <> ALL($3::text[]) THEN '"kind": "user"' END,
               CASE WHEN 'name' <> ALL($3::text[]) THEN '"name": ' || to_json(p.name) END,
               CASE WHEN 'admin' <> ALL($3::text[]) THEN '"admin": ' || p.admin END,
               CASE WHEN 'roles' <> ALL($3::text[]) THEN '"roles": ' ||
                   CASE WHEN rol.roles IS NULL
                        THEN CASE WHEN p.admin THEN '["admin", "user"]' ELSE '["user"]' END
                        ELSE to_jsonb(ARRAY(
                            SELECT DISTINCT r COLLATE "C" FROM unnest(
                                ARRAY['user'] || CASE WHEN p.admin THEN ARRAY['admin']
                                                      ELSE '{}' END || rol.roles) r
                             ORDER BY 1))::text END END,
               CASE WHEN 'groups' <> ALL($3::text[])
                    THEN '"groups": ' || coalesce(to_jsonb(grp.names)::text, '[]') END,
               CASE WHEN 'server' <> ALL($3::text[]) THEN '"server": null' END,
               CASE WHEN 'pending' <> ALL($3::text[]) THEN '"pending": null' END,
               CASE WHEN 'created' <> ALL($3::text[])
                    THEN '"created": "' || chronohub_iso(p.created) || '"' END,
               CASE WHEN 'last_activity' <> ALL($3::text[])
                    THEN '"last_activity": '
                         || coalesce('"' || chronohub_iso(act.last_activity) || '"', 'null') END,
               CASE WHEN 'servers' <> ALL($3::text[]) THEN '"servers": {}' END,
               CASE WHEN 'auth_state' <> ALL($3::text[]) THEN '"auth_state": null' END,
               CASE WHEN 'user_info' <> ALL($3::text[])
                    THEN '"user_info": {"name": ' || to_json(p.name)
                         || ', "display_name": ' || to_json(p.name) || '}' END
           ) || '}' AS model
      FROM page p
      LEFT JOIN grp ON grp.user_id = p.user_id
      LEFT JOIN rol ON rol.principal = p.user_id::text
      LEFT JOIN act ON act.user_id = p.user_id
      LEFT JOIN srv ON srv.user_id = p.user_id
)
SELECT convert_to('[' || coalesce((SELECT string_agg(model, ', ' ORDER BY n) FROM models), '')
                  || ']', 'UTF8') AS items,
       (SELECT count(*) FROM models) AS count,
       (SELECT count(*) FROM users) AS total,
       ARRAY(SELECT user_id FROM models WHERE with_servers ORDER BY n) AS with_servers;

-- name: user_lock
-- User $1's row locked until the caller's transaction ends (users.lock): taken before
-- appending the user's deletion or rename. FOR UPDATE, which waits for, and holds back, the
-- FOR KEY SHARE of token_secrets_beside (hub/auth/auth.sql).
SELECT 1 FROM users WHERE name = $1 FOR UPDATE;
