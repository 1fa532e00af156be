-- Reads and writes of the shares API (hub/api/shares.py): shares and share codes with the
-- names of everyone they concern, and the share codes' hashes (kept beside the events).

-- name: server_state
-- The state of a user's server, if the hub knows it (the default server may have no row yet).
SELECT state FROM servers WHERE user_id = $1 AND server_name = $2;

-- name: shares_select
-- Shares, filtered by whichever of these is not null: $1 the owner, $2 the server's name,
-- $3 a recipient user (and, when $4, the groups they are in), $5 a recipient group, $6 the
-- recipient's kind and $7 its id (one share). Ordered as JupyterHub lists them, one page.
SELECT o.name AS owner, sh.server_name, sh.recipient_kind, sh.recipient_id,
       coalesce(u.name, g.name) AS recipient, sh.scopes, sh.created,
       coalesce(sv.state = 'ready', false) AS ready,
       count(*) OVER () AS total
  FROM shares sh
  JOIN users o ON o.user_id = sh.owner_id
  LEFT JOIN users u ON sh.recipient_kind = 'user' AND u.user_id = sh.recipient_id
  LEFT JOIN groups g ON sh.recipient_kind = 'group' AND g.group_id = sh.recipient_id
  LEFT JOIN servers sv ON sv.user_id = sh.owner_id AND sv.server_name = sh.server_name
 WHERE ($1::uuid IS NULL OR sh.owner_id = $1)
   AND ($2::text IS NULL OR sh.server_name = $2)
   AND ($3::uuid IS NULL
        OR (sh.recipient_kind = 'user' AND sh.recipient_id = $3)
        OR ($4 AND sh.recipient_kind = 'group' AND sh.recipient_id IN (
                SELECT group_id FROM group_members WHERE user_id = $3)))
   AND ($5::uuid IS NULL OR (sh.recipient_kind = 'group' AND sh.recipient_id = $5))
   AND ($6::text IS NULL OR (sh.recipient_kind = $6 AND sh.recipient_id = $7))
 ORDER BY o.name, sh.server_name, sh.recipient_kind DESC, recipient
OFFSET $8 LIMIT $9;

-- name: shares_count
SELECT count(*)
  FROM shares sh
 WHERE ($1::uuid IS NULL OR sh.owner_id = $1)
   AND ($2::text IS NULL OR sh.server_name = $2)
   AND ($3::uuid IS NULL
        OR (sh.recipient_kind = 'user' AND sh.recipient_id = $3)
        OR ($4 AND sh.recipient_kind = 'group' AND sh.recipient_id IN (
                SELECT group_id FROM group_members WHERE user_id = $3)))
   AND ($5::uuid IS NULL OR (sh.recipient_kind = 'group' AND sh.recipient_id = $5))
   AND ($6::text IS NULL OR (sh.recipient_kind = $6 AND sh.recipient_id = $7));

-- name: share_recipients
-- Who a server is shared with (every share, for revoking them all).
SELECT sh.recipient_kind, sh.recipient_id, coalesce(u.name, g.name) AS recipient
  FROM shares sh
  LEFT JOIN users u ON sh.recipient_kind = 'user' AND u.user_id = sh.recipient_id
  LEFT JOIN groups g ON sh.recipient_kind = 'group' AND g.group_id = sh.recipient_id
 WHERE sh.owner_id = $1 AND sh.server_name = $2
 ORDER BY sh.recipient_kind DESC, recipient;

-- name: codes_page
-- The live (unexpired) share codes of an owner ($2 null) or of one server, oldest first.
SELECT c.code_id, o.name AS owner, c.server_name, c.scopes, c.created, c.expires_at,
       c.exchange_count, c.last_exchanged_at,
       coalesce(sv.state = 'ready', false) AS ready,
       count(*) OVER () AS total
  FROM share_codes c
  JOIN users o ON o.user_id = c.owner_id
  LEFT JOIN servers sv ON sv.user_id = c.owner_id AND sv.server_name = c.server_name
 WHERE c.owner_id = $1 AND ($2::text IS NULL OR c.server_name = $2)
   AND c.expires_at > clock_timestamp()
 ORDER BY c.number
OFFSET $3 LIMIT $4;

-- name: codes_count
SELECT count(*) FROM share_codes c
 WHERE c.owner_id = $1 AND ($2::text IS NULL OR c.server_name = $2)
   AND c.expires_at > clock_timestamp();

-- name: code_by_id
SELECT c.code_id, o.name AS owner, c.owner_id, c.server_name, c.scopes, c.created,
       c.expires_at, c.exchange_count, c.last_exchanged_at,
       coalesce(sv.state = 'ready', false) AS ready
  FROM share_codes c
  JOIN users o ON o.user_id = c.owner_id
  LEFT JOIN servers sv ON sv.user_id = c.owner_id AND sv.server_name = c.server_name
 WHERE c.code_id = $1;

-- name: code_by_hash
-- A live share code by its hash; none once it expired or was revoked.
SELECT c.code_id, o.name AS owner, c.owner_id, c.server_name, c.scopes, c.expires_at
  FROM share_code_secrets k
  JOIN share_codes c USING (code_id)
  JOIN users o ON o.user_id = c.owner_id
 WHERE k.hash = $1 AND c.expires_at > clock_timestamp();

-- name: code_ids_of_server
SELECT code_id FROM share_codes WHERE owner_id = $1 AND server_name = $2 ORDER BY number;

-- name: code_number
SELECT nextval('share_code_numbers');

-- name: code_secrets_purge_expired
-- The hashes of codes that expired, or went with their server or owner, are of no more use:
-- dropped whenever a code is issued.
DELETE FROM share_code_secrets k
 WHERE NOT EXISTS (SELECT 1 FROM share_codes c
                    WHERE c.code_id = k.code_id AND c.expires_at > clock_timestamp());

-- name: code_secret_store
INSERT INTO share_code_secrets (code_id, hash) VALUES ($1, $2);

-- name: code_secrets_delete
DELETE FROM share_code_secrets WHERE code_id = ANY($1::text[]);

-- name: code_id_by_hash
SELECT code_id FROM share_code_secrets WHERE hash = $1;
