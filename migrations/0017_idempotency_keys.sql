-- Idempotency keys of REST writes (hub/web/idempotency.py, issue 20): a client that retries a
-- POST, PATCH or DELETE with the same ``Idempotency-Key`` header gets the first answer again
-- and appends nothing twice. A key's row is written in the same transaction as the events of
-- the request it answered, so a hub killed after the commit but before answering still has it.
--
-- Neither the key nor the answer is kept in the clear: ``lookup`` is a digest of the caller and
-- the key, and ``answer`` the response body encrypted with a key derived from them (a token's
-- answer holds the token), so this table gives nothing to one who reads it without the client's
-- key. Not a hub action, so outside the event log, as login failures are.
CREATE TABLE idempotency_keys (
    lookup       bytea PRIMARY KEY,
    fingerprint  bytea NOT NULL,
    status       smallint NOT NULL,
    headers      jsonb NOT NULL,
    answer       bytea NOT NULL,
    created      timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires      timestamptz NOT NULL
);

CREATE INDEX idempotency_keys_expires ON idempotency_keys (expires);
