-- The groups read model (hub/reads/groups.py): the groups API's, the admin page's and
-- bootstrap's reads of groups.

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
