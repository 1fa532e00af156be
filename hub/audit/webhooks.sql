-- Checkpoints of services' webhooks (hub/audit/webhooks.py; table: migration 0013).

-- name: ensure
-- A webhook seen for the first time starts at the head of the log ($2 tx, $3 position): it
-- is sent what happens from now on, not the hub's whole past.
INSERT INTO webhook_checkpoints (service, tx_id, position)
VALUES ($1, $2::text::xid8, $3)
ON CONFLICT (service) DO NOTHING;

-- name: get
SELECT tx_id::text AS tx, position, delivered FROM webhook_checkpoints WHERE service = $1;

-- name: advance
-- Move the checkpoint from ($2, $3) to ($4, $5), counting $6 deliveries; no row when another
-- hub process moved it meanwhile (the caller then reads where it stands).
UPDATE webhook_checkpoints
   SET tx_id = $4::text::xid8, position = $5, delivered = delivered + $6,
       updated_at = clock_timestamp()
 WHERE service = $1 AND tx_id = $2::text::xid8 AND position = $3
RETURNING position;
