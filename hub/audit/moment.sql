-- Queries of "the hub at a moment" (hub/audit/moment.py), used by ``chronohub state --at``
-- and the page /hub/events/at/{position}.

-- The state queries run with search_path on the scratch schema that holds the projections
-- as of a past checkpoint: the unqualified names read the past, not the live tables. Each
-- returns display columns, then the number of rows in all.

-- name: state_users
SELECT name, CASE WHEN admin THEN 'yes' ELSE 'no' END AS admin,
       to_char(created AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS "created (UTC)",
       count(*) OVER () AS total
  FROM users
 ORDER BY users.created, name
 LIMIT $1;

-- name: state_groups
SELECT gr.name,
       coalesce((SELECT string_agg(u.name, ', ' ORDER BY u.name)
                   FROM group_members m JOIN users u USING (user_id)
                  WHERE m.group_id = gr.group_id), '') AS members,
       count(*) OVER () AS total
  FROM groups gr
 ORDER BY gr.name
 LIMIT $1;

-- name: state_tokens
-- Never a secret: there is none in the projections (token_secrets is not replayed).
SELECT t.token_id AS id, coalesce(u.name, 'service ' || t.service) AS owner,
       array_to_string(t.scopes, ', ') AS scopes,
       coalesce(to_char(t.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), 'never')
           AS "expires (UTC)",
       count(*) OVER () AS total
  FROM tokens t LEFT JOIN users u USING (user_id)
 ORDER BY t.created, t.token_id
 LIMIT $1;

-- name: state_servers
SELECT s.user_name AS "user", s.server_name AS server, s.state,
       coalesce(s.url, '') AS url,
       coalesce(to_char(s.started AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), '')
           AS "started (UTC)",
       count(*) OVER () AS total
  FROM servers s
 ORDER BY s.user_name, s.server_name
 LIMIT $1;

-- name: state_projects
-- Each project as owner/name, with its members in one cell: users, then groups, by name.
SELECT coalesce(u.name, g.name) || '/' || p.name AS project, p.visibility,
       coalesce((SELECT string_agg(coalesce(mu.name, 'group ' || mg.name) || ' (' || m.role || ')',
                                   ', ' ORDER BY m.member_kind DESC, coalesce(mu.name, mg.name))
                   FROM project_members m
                   LEFT JOIN users mu ON m.member_kind = 'user' AND mu.user_id = m.member_id
                   LEFT JOIN groups mg ON m.member_kind = 'group' AND mg.group_id = m.member_id
                  WHERE m.project_id = p.project_id), '') AS members,
       to_char(p.created AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS "created (UTC)",
       coalesce(to_char(p.last_push AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), 'never')
           AS "last push (UTC)",
       count(*) OVER () AS total
  FROM projects p
  LEFT JOIN users u ON p.owner_kind = 'user' AND u.user_id = p.owner_id
  LEFT JOIN groups g ON p.owner_kind = 'group' AND g.group_id = p.owner_id
 ORDER BY lower(coalesce(u.name, g.name)), lower(p.name)
 LIMIT $1;

-- name: set_statement_timeout
-- A replay's bound on each statement, for the session (reset after the replay).
SELECT set_config('statement_timeout', $1, false);

-- name: reset_statement_timeout
RESET statement_timeout;

-- name: last_position
-- The log's last position, committed or not yet readable (for the error past its end).
SELECT coalesce(max(global_position), 0) FROM events;
