-- The read cache (issue 20 part 4): each hub process remembers the answers of the users list's
-- queries (hub/reads/cache.py) and must forget them, in every process, when anything they were
-- read from changes. It shares the token cache's notifications ('chronohub_auth'), their
-- numbering and the acknowledgements (0021, hub/auth/token_acks.py): a process that handled
-- notification n has emptied both caches for every change committed up to n.
--
-- Two kinds of notification now: '<n>' as before (what tokens resolve to changed: both caches
-- forget), and '<n> reads' (only what the read cache holds changed: a user created, a server's
-- state, a last_activity moved), which leaves the token cache alone, so that activity, which
-- moves often, does not empty it. At most one of each kind per transaction; none of the second
-- after one of the first, which empties both.
CREATE OR REPLACE FUNCTION chronohub_auth_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kind text := coalesce(TG_ARGV[0], 'auth');
    sent text := coalesce(current_setting('chronohub.auth_notified', true), '');
BEGIN
    IF sent = 'auth' OR sent = kind THEN
        RETURN NULL;
    END IF;
    -- the key is a constant nothing else uses; token_acks.sql's member_join takes it too
    PERFORM pg_advisory_xact_lock(7266117215243641);
    PERFORM set_config('chronohub.auth_notified', kind, true);
    PERFORM pg_notify('chronohub_auth', nextval('chronohub_auth_seq')::text
                      || CASE WHEN kind = 'reads' THEN ' reads' ELSE '' END);
    RETURN NULL;
END;
$$;

-- The events that change the read models the read cache reads (users, groups and their
-- members, role grants, servers: hub/reads/cache.py's CHANGING, the event types their
-- projections handle) and that auth_changed does not already notify; a test checks that the
-- two lists together are CHANGING's. The hot appends (token.issued, collab, activity reported
-- as telemetry below) are not among them.
CREATE CONSTRAINT TRIGGER reads_changed AFTER INSERT ON events
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.event_type IN (
        'user.created',
        'server.defined', 'server.modified', 'server.spawn_requested', 'server.started',
        'server.ready', 'server.stop_requested', 'server.stopped', 'server.failed'))
    EXECUTE FUNCTION chronohub_auth_changed('reads');

-- last_activity, which the users list shows, is written beside the log without an event (API
-- use, activity reports, the proxy's activity): a row added or removed, or its time moved.
-- At commit, like the others (a lock taken earlier could deadlock with a transaction that
-- holds an activity row and waits for it at its own commit).
CREATE CONSTRAINT TRIGGER activity_added AFTER INSERT OR DELETE ON activity
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    EXECUTE FUNCTION chronohub_auth_changed('reads');
CREATE CONSTRAINT TRIGGER activity_moved AFTER UPDATE ON activity
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (OLD.last_activity IS DISTINCT FROM NEW.last_activity)
    EXECUTE FUNCTION chronohub_auth_changed('reads');
CREATE CONSTRAINT TRIGGER server_activity_added AFTER INSERT OR DELETE ON server_activity
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    EXECUTE FUNCTION chronohub_auth_changed('reads');
CREATE CONSTRAINT TRIGGER server_activity_moved AFTER UPDATE ON server_activity
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (OLD.last_activity IS DISTINCT FROM NEW.last_activity)
    EXECUTE FUNCTION chronohub_auth_changed('reads');
