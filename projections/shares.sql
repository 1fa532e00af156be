-- Queries of the shares projection (projections/shares.py). Each statement applies one event;
-- none reads another projection's tables, so a rebuild replays the same way.

-- name: share_grant
-- $5: the scope names granted now, added to those the recipient already has (sorted, once).
INSERT INTO shares (owner_id, server_name, recipient_kind, recipient_id, scopes, created,
                    last_position)
VALUES ($1, $2, $3, $4, ARRAY(SELECT DISTINCT s FROM unnest($5::text[]) s ORDER BY s), $6, $7)
ON CONFLICT (owner_id, server_name, recipient_kind, recipient_id) DO UPDATE
   SET scopes = ARRAY(SELECT DISTINCT s FROM unnest(shares.scopes || excluded.scopes) s
                      ORDER BY s),
       last_position = excluded.last_position;

-- name: share_revoke_scopes
UPDATE shares
   SET scopes = ARRAY(SELECT s FROM unnest(scopes) s WHERE s <> ALL($5::text[]) ORDER BY s),
       last_position = $6
 WHERE owner_id = $1 AND server_name = $2 AND recipient_kind = $3 AND recipient_id = $4;

-- name: share_delete
-- Revoking every scope, or the last one, ends the share.
DELETE FROM shares
 WHERE owner_id = $1 AND server_name = $2 AND recipient_kind = $3 AND recipient_id = $4
   AND ($5 OR cardinality(scopes) = 0);

-- name: code_create
INSERT INTO share_codes (code_id, number, owner_id, server_name, scopes, created, expires_at,
                         exchange_count, last_exchanged_at, last_position)
VALUES ($1, $2, $3, $4, $5, $6, $7, 0, NULL, $8);

-- name: code_accepted
UPDATE share_codes
   SET exchange_count = exchange_count + 1, last_exchanged_at = $2, last_position = $3
 WHERE code_id = $1;

-- name: codes_delete
DELETE FROM share_codes WHERE code_id = ANY($1::text[]);

-- name: user_deleted
-- A user that goes takes the shares of their servers, their share codes and what was shared
-- with them.
WITH codes AS (DELETE FROM share_codes WHERE owner_id = $1)
DELETE FROM shares
 WHERE owner_id = $1 OR (recipient_kind = 'user' AND recipient_id = $1);

-- name: group_deleted
DELETE FROM shares WHERE recipient_kind = 'group' AND recipient_id = $1;

-- name: server_removed
WITH codes AS (DELETE FROM share_codes WHERE owner_id = $1 AND server_name = $2)
DELETE FROM shares WHERE owner_id = $1 AND server_name = $2;

-- name: server_renamed
-- A renamed server keeps its shares and codes, under its new name.
WITH codes AS (UPDATE share_codes SET server_name = $3 WHERE owner_id = $1 AND server_name = $2)
UPDATE shares SET server_name = $3 WHERE owner_id = $1 AND server_name = $2;
