-- Where each service's webhook stands (hub/audit/webhooks.py): the last event its receiver
-- acknowledged with a 2xx, as the (transaction id, position) pair readers order by. Written
-- after each acknowledgement, so a restarted hub resumes after it: nothing acknowledged is
-- sent again, nothing after it is lost.
CREATE TABLE webhook_checkpoints (
    service      text PRIMARY KEY,
    tx_id        xid8 NOT NULL,
    position     bigint NOT NULL,
    delivered    bigint NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
