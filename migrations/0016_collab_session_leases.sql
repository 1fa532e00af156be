-- A collaboration session's owner holds a lease on it (issue 20): the hub process that runs
-- the session renews ``lease_until`` while it runs it; when the owner dies (kill -9, a lost
-- machine), the lease expires and another process takes the session over: it restarts the
-- kernel on the room's stored document (hub/api/collab_lease.py). To do so it needs what
-- the session was started with: its kernel, its creator (whose account the kernel runs as)
-- and its room's owner. Rows claimed before this migration have none of these (NULL): they
-- are never taken over, only forgotten when their owner does not answer, as before.
--
-- The creator is kept by id (``created_by_id``, a user's; a service has none and is known by
-- its name): a takeover runs the kernel as that user's account now, whatever their name is;
-- never as whoever holds the name since (a user renamed, another given the old name).
-- ``created_by`` is the name they had, for people reading the table.
--
-- ``incarnation``: which start of the owner process holds the lease (a random id per start).
-- A process restarted at its predecessor's address is another owner: it takes over (or
-- answers 503 for) its dead predecessor's sessions rather than taking them for its own.
ALTER TABLE collab_session_owners
    ADD COLUMN lease_until timestamptz NOT NULL DEFAULT clock_timestamp(),
    ADD COLUMN incarnation text,
    ADD COLUMN kernel_name text,
    ADD COLUMN created_by_kind text CHECK (created_by_kind IN ('user', 'service')),
    ADD COLUMN created_by text,
    ADD COLUMN created_by_id uuid,
    ADD COLUMN room_owner text,
    ADD CONSTRAINT collab_session_owners_creator
        CHECK ((created_by IS NULL) = (created_by_kind IS NULL)
               AND (created_by IS NULL) = (kernel_name IS NULL)
               AND (created_by_kind = 'user') = (created_by_id IS NOT NULL));

-- Renewals go by owner; the sweep for expired leases by expiry.
CREATE INDEX collab_session_owners_origin ON collab_session_owners (origin, incarnation);
CREATE INDEX collab_session_owners_lease ON collab_session_owners (lease_until)
    WHERE created_by IS NOT NULL;
