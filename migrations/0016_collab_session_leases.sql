-- A collaboration session's owner holds a lease on it (issue 20): the hub process that runs
-- the session renews ``lease_until`` while it runs it; when the owner dies (kill -9, a lost
-- machine), the lease expires and another process takes the session over: it restarts the
-- kernel on the room's stored document (hub/api/collab_lease.py). To do so it needs what
-- the session was started with: its kernel, its creator (whose account the kernel runs as)
-- and its room's owner. Rows claimed before this migration have none of these (NULL): they
-- are never taken over, only forgotten when their owner does not answer, as before.
ALTER TABLE collab_session_owners
    ADD COLUMN lease_until timestamptz NOT NULL DEFAULT clock_timestamp(),
    ADD COLUMN kernel_name text,
    ADD COLUMN created_by_kind text CHECK (created_by_kind IN ('user', 'service')),
    ADD COLUMN created_by text,
    ADD COLUMN room_owner text,
    ADD CONSTRAINT collab_session_owners_creator
        CHECK ((created_by IS NULL) = (created_by_kind IS NULL)
               AND (created_by IS NULL) = (kernel_name IS NULL));

-- Renewals go by owner; the sweep for expired leases by expiry.
CREATE INDEX collab_session_owners_origin ON collab_session_owners (origin);
CREATE INDEX collab_session_owners_lease ON collab_session_owners (lease_until)
    WHERE created_by IS NOT NULL;
