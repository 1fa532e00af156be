-- Where each service's webhook stands (hub/audit/webhooks.py): the last event its receiver
-- acknowledged with a 2xx, as the (transaction id, position) pair readers order by. Written
-- after each acknowledgement, so a restarted hub resumes after it: nothing acknowledged is
-- sent again, nothing after it is lost.
--
-- With several hub processes, one at a time delivers a service's events (so they stay in
-- order): the one holding the lease (leased_by, until lease_until), renewed while it works.
CREATE TABLE webhook_checkpoints (
    service      text PRIMARY KEY,
    tx_id        xid8 NOT NULL,
    position     bigint NOT NULL,
    delivered    bigint NOT NULL DEFAULT 0,
    leased_by    text,
    lease_until  timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
