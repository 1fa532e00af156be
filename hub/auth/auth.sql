-- Queries of hub/auth/: credentials, login cookies, login throttling, signups; callers and
-- their tokens, roles and groups (access.py, tokens.py). Users by name: hub/reads/users.sql.

-- name: credential_get
SELECT password_hash FROM credentials WHERE user_id = $1;

-- name: credential_set
INSERT INTO credentials (user_id, password_hash, updated) VALUES ($1, $2, $3)
ON CONFLICT (user_id) DO UPDATE
   SET password_hash = excluded.password_hash, updated = excluded.updated;

-- name: credential_delete
DELETE FROM credentials WHERE user_id = $1;

-- name: signup_credential_set
INSERT INTO signup_credentials (name, password_hash) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash;

-- name: signup_credential_take
DELETE FROM signup_credentials WHERE name = $1 RETURNING password_hash;

-- name: signup_pending
SELECT name, request_id, requested FROM signup_requests WHERE name = $1;

-- name: signups_all
SELECT name, request_id, requested FROM signup_requests ORDER BY requested, name;

-- name: failures_get
SELECT key, failures, window_start, locked_until FROM login_failures WHERE key = ANY($1::text[]);

-- name: failures_lock
SELECT key, failures, window_start, locked_until FROM login_failures WHERE key = ANY($1::text[])
   FOR UPDATE;

-- name: failures_put
INSERT INTO login_failures (key, failures, window_start, locked_until) VALUES ($1, $2, $3, $4)
ON CONFLICT (key) DO UPDATE
   SET failures = excluded.failures, window_start = excluded.window_start,
       locked_until = excluded.locked_until;

-- name: failures_clear
DELETE FROM login_failures WHERE key = $1;

-- name: session_create
INSERT INTO login_sessions (session_id, hash, user_id, created, expires_at)
VALUES ($1, $2, $3, $4, $5);

-- name: session_user
-- The user of a live browser session (none once it expired, ended, or the user was deleted).
SELECT s.session_id, u.user_id, u.name, u.admin,
       coalesce((SELECT array_agg(gr.name ORDER BY gr.name)
                   FROM group_members m JOIN groups gr USING (group_id)
                  WHERE m.user_id = u.user_id), '{}') AS groups
  FROM login_sessions s JOIN users u USING (user_id)
 WHERE s.hash = $1 AND s.expires_at > clock_timestamp();

-- name: session_delete
DELETE FROM login_sessions WHERE session_id = $1 RETURNING user_id;

-- name: sessions_end_others
DELETE FROM login_sessions WHERE user_id = $1 AND session_id <> coalesce($2, '')
RETURNING session_id;

-- name: sessions_purge
DELETE FROM login_sessions WHERE expires_at <= clock_timestamp();

-- name: token_owner
-- Who a token belongs to, if it exists and has not expired, with everything needed to work
-- out its scopes and whoami's answer: a request's lookup, in one round trip, when the hub's
-- token cache does not hold it (hub/auth/token_cache.py; expires_at is checked at each use).
SELECT t.token_id, t.user_id, t.service, t.scopes, t.expires_at,
       u.name AS user_name, u.admin AS user_admin, u.created AS user_created,
       s.admin AS service_admin,
       (SELECT max(a.last_activity) FROM activity a WHERE a.user_id = t.user_id)
           AS last_activity,
       coalesce((SELECT array_agg(gr.name ORDER BY gr.name)
                   FROM group_members m JOIN groups gr USING (group_id)
                  WHERE m.user_id = t.user_id), '{}') AS groups,
       coalesce((SELECT array_agg(DISTINCT g.role ORDER BY g.role)
                   FROM role_grants g
                  WHERE (g.principal_kind = 'user' AND g.principal = t.user_id::text)
                     OR (g.principal_kind = 'service' AND g.principal = t.service)), '{}')
           AS role_names,
       -- the roles granted to the owner or its groups, and for a user the configured
       -- ``user`` role (see user_scopes)
       coalesce((SELECT array_agg(scope)
                   FROM roles r, unnest(r.scopes) scope
                  WHERE (r.name = 'user' AND t.user_id IS NOT NULL)
                     OR r.name IN (
                        SELECT g.role FROM role_grants g
                         WHERE (g.principal_kind = 'user' AND g.principal = t.user_id::text)
                            OR (g.principal_kind = 'service' AND g.principal = t.service)
                            OR (g.principal_kind = 'group' AND g.principal IN (
                                   SELECT group_id::text FROM group_members
                                    WHERE user_id = t.user_id)))), '{}') AS role_scopes,
       coalesce((SELECT array_agg(scope || '!server=' || o.name || '/' || sh.server_name)
                   FROM shares sh JOIN users o ON o.user_id = sh.owner_id, unnest(sh.scopes) scope
                  WHERE (sh.recipient_kind = 'user' AND sh.recipient_id = t.user_id)
                     OR (sh.recipient_kind = 'group' AND sh.recipient_id IN (
                            SELECT group_id FROM group_members WHERE user_id = t.user_id))),
                '{}') AS share_scopes
  FROM token_secrets k
  JOIN tokens t USING (token_id)
  LEFT JOIN users u ON u.user_id = t.user_id
  LEFT JOIN services s ON s.name = t.service
 WHERE k.hash = $1
   AND (t.expires_at IS NULL OR t.expires_at > clock_timestamp());

-- name: token_store_secret
INSERT INTO token_secrets (token_id, prefix, hash) VALUES ($1, $2, $3);

-- name: new_token_owners
-- The users new tokens are for ($1 their names: id, name, admin flag and groups of those that
-- exist), read before the tokens are judged (hub/api/tokens.py; concurrent requests' in one
-- query, hub/reads/coalesce.py); each token's hash is stored with its event
-- (token_secrets_beside), which checks again that its user is still there.
SELECT u.user_id, u.name, u.admin,
       coalesce((SELECT array_agg(gr.name ORDER BY gr.name)
                   FROM group_members m JOIN groups gr USING (group_id)
                  WHERE m.user_id = u.user_id), '{}') AS groups
  FROM users u
 WHERE u.name = ANY($1::text[]);

-- name: token_secrets_beside
-- The hashes of new user tokens, written in the transaction that appends their token.issued
-- events (hub/auth/tokens.py, SecretBeside; several tokens' at once when their appends share
-- a batch, events/group_commit.py): $1 token ids, $2 prefixes, $3 hashes, $4 owners' user
-- ids, $5 the owners' names as the requests named them. A hash is stored only if its owner is
-- still there under that name; the owners' rows are locked (FOR KEY SHARE, in one order) until
-- the commit. A user's deletion or rename locks its row FOR UPDATE before appending its event
-- (hub/reads/users.py, lock), so it either waits for this commit (the tokens' events before
-- its own in the log, a deletion then taking the tokens along: token_forget_user) or went
-- first (its token refused here, nothing of it written). Returns
-- the ids of the tokens whose hashes were stored. A hash stored already under its token's id
-- (a retry of an append that committed) is left as it is: token_secrets_of tells which.
WITH req AS (
    SELECT *
      FROM unnest($1::text[], $2::text[], $3::bytea[], $4::uuid[], $5::text[])
               AS r(token_id, prefix, hash, user_id, name)
), owners AS (
    SELECT u.user_id, u.name
      FROM users u
     WHERE u.user_id IN (SELECT r.user_id FROM req r)
     ORDER BY u.user_id
       FOR KEY SHARE
), stored AS (
    INSERT INTO token_secrets (token_id, prefix, hash)
    SELECT r.token_id, r.prefix, r.hash
      FROM req r JOIN owners o ON o.user_id = r.user_id AND o.name = r.name
    ON CONFLICT (token_id) DO NOTHING
    RETURNING token_id
)
SELECT token_id FROM stored;

-- name: token_secrets_of
-- The hashes stored under tokens $1 (by id), for those that token_secrets_beside did not
-- store: in a statement of its own, so that it sees a hash that a concurrent attempt of the
-- same append committed while token_secrets_beside waited on it.
SELECT token_id, hash FROM token_secrets WHERE token_id = ANY($1::text[]);

-- name: token_touch
INSERT INTO token_activity (token_id, last_activity) VALUES ($1, $2)
ON CONFLICT (token_id) DO UPDATE SET last_activity = greatest(token_activity.last_activity,
                                                              excluded.last_activity);

-- name: user_scopes
-- What a user holds, in one round trip: every scope granted through roles given to them or to
-- their groups, and through the ``user`` role every user holds, as configured (JupyterHub lets
-- its configuration extend that role, ``access:services!service=x`` for everyone, so the stored
-- role counts, not only the built-in scopes, which the caller adds); the scopes shared with
-- them, directly or through their groups, each on its server (hub/api/shares.py grants them;
-- JupyterHub counts them as the user's own); and the names of the roles granted to them.
SELECT coalesce((SELECT array_agg(scope)
                   FROM roles r, unnest(r.scopes) scope
                  WHERE r.name = 'user'
                     OR r.name IN (
                        SELECT g.role FROM role_grants g
                         WHERE (g.principal_kind = 'user' AND g.principal = $1::uuid::text)
                            OR (g.principal_kind = 'group' AND g.principal IN (
                                   SELECT group_id::text FROM group_members
                                    WHERE user_id = $1::uuid)))), '{}') AS role_scopes,
       coalesce((SELECT array_agg(scope || '!server=' || o.name || '/' || sh.server_name)
                   FROM shares sh JOIN users o ON o.user_id = sh.owner_id, unnest(sh.scopes) scope
                  WHERE (sh.recipient_kind = 'user' AND sh.recipient_id = $1::uuid)
                     OR (sh.recipient_kind = 'group' AND sh.recipient_id IN (
                            SELECT group_id FROM group_members WHERE user_id = $1::uuid))),
                '{}') AS share_scopes,
       coalesce((SELECT array_agg(DISTINCT g.role ORDER BY g.role)
                   FROM role_grants g
                  WHERE g.principal_kind = 'user' AND g.principal = $1::uuid::text), '{}')
           AS role_names;

-- name: activity_touch
-- Activity only moves forward.
INSERT INTO activity (user_id, server_name, last_activity) VALUES ($1, $2, $3)
ON CONFLICT (user_id, server_name) DO UPDATE
   SET last_activity = greatest(activity.last_activity, excluded.last_activity);

-- name: activity_touch_unless_server_token
-- A user's activity from API use with token $2, unless that is a server's own token: a
-- server's API calls are not its user's activity (JupyterHub does not count them either).
-- The user's activity written, if it was.
INSERT INTO activity (user_id, server_name, last_activity)
SELECT $1, '', $3
 WHERE NOT EXISTS (SELECT 1 FROM servers WHERE token_id = $2)
ON CONFLICT (user_id, server_name) DO UPDATE
   SET last_activity = greatest(activity.last_activity, excluded.last_activity)
RETURNING last_activity;

-- name: groups_of_users
SELECT u.name AS user_name, g.name AS group_name
  FROM users u JOIN group_members m USING (user_id) JOIN groups g USING (group_id)
 WHERE u.name = ANY($1::text[]);
