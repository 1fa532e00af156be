-- Checkpoints and leases of services' webhooks (hub/audit/webhooks.py; table: migration 0012).

-- name: ensure
-- A webhook seen for the first time starts at the head of the log ($2 tx, $3 position): it
-- is sent what happens from now on, not the hub's whole past.
INSERT INTO webhook_checkpoints (service, tx_id, position)
VALUES ($1, $2::text::xid8, $3)
ON CONFLICT (service) DO NOTHING;

-- name: lease
-- Hub process $2 takes the webhook for $3 seconds if nobody holds it, it holds it already,
-- or the holder's lease has run out; returns where the webhook stands, or no row.
UPDATE webhook_checkpoints
   SET leased_by = $2, lease_until = clock_timestamp() + make_interval(secs => $3)
 WHERE service = $1
   AND (leased_by IS NULL OR leased_by = $2 OR lease_until < clock_timestamp())
RETURNING tx_id::text AS tx, position, delivered;

-- name: lease_holder
-- Who holds the webhook's lease now (NULL: nobody).
SELECT leased_by FROM webhook_checkpoints WHERE service = $1;

-- name: lease_from_dead
-- Hub process $2 takes the webhook for $3 seconds from holder $4, a process known to be dead
-- (killed on this machine: nothing released its lease); no row if $4 no longer holds it.
UPDATE webhook_checkpoints
   SET leased_by = $2, lease_until = clock_timestamp() + make_interval(secs => $3)
 WHERE service = $1 AND leased_by = $4
RETURNING tx_id::text AS tx, position, delivered;

-- name: renew
-- The holder $2 keeps its lease $3 seconds more; no row if it is no longer the holder.
UPDATE webhook_checkpoints
   SET lease_until = clock_timestamp() + make_interval(secs => $3)
 WHERE service = $1 AND leased_by = $2
RETURNING position;

-- name: release
-- Hub process $1 stops: its webhooks are free for another process at once.
UPDATE webhook_checkpoints SET leased_by = NULL, lease_until = NULL WHERE leased_by = $1;

-- name: advance
-- The holder $7 moves the checkpoint from ($2, $3) to ($4, $5), counting $6 deliveries; no
-- row when it is no longer the holder (another process took over when its lease ran out).
UPDATE webhook_checkpoints
   SET tx_id = $4::text::xid8, position = $5, delivered = delivered + $6,
       updated_at = clock_timestamp()
 WHERE service = $1 AND tx_id = $2::text::xid8 AND position = $3 AND leased_by = $7
RETURNING position;
