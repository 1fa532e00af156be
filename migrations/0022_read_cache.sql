-- The read cache (issue 20 part 4): each hub process remembers the answers of the users and
-- groups lists' queries (hub/reads/cache.py) and must forget them, in every process, when
-- anything the log changes on them changes. It shares the token cache's notifications
-- ('chronohub_auth'), their numbering and the acknowledgements (0021,
-- hub/auth/token_acks.py): a process that handled notification n has emptied both caches for
-- every change committed up to n.
--
-- Two kinds of notification now: '<n>' as before (what tokens resolve to changed: both caches
-- forget), and '<n> reads' (only what the read cache holds changed: a user created, a server's
-- state), which leaves the token cache alone. At most one of each kind per transaction; none
-- of the second after one of the first, which empties both.
--
-- last_activity, which the users list shows and which is written beside the log without an
-- event (a token's use, browsers, activity reports, the proxy's poll), fires nothing here, as
-- before: those writes are hot, and must neither take the ordering lock nor wait for the other
-- processes. The read cache bounds its answers' age instead (read_cache_max_age_s).
--
-- chronohub_notify_changed(kind) sends one: from the triggers below, and from a rebuild's swap
-- of the read models (projections/rebuild.py: an import, `chronohub projections rebuild`),
-- which changes them without appending.
CREATE FUNCTION chronohub_notify_changed(kind text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    sent text := coalesce(current_setting('chronohub.auth_notified', true), '');
BEGIN
    IF sent = 'auth' OR sent = kind THEN
        RETURN;
    END IF;
    -- the key is a constant nothing else uses; token_acks.sql's member_join takes it too
    PERFORM pg_advisory_xact_lock(7266117215243641);
    PERFORM set_config('chronohub.auth_notified', kind, true);
    PERFORM pg_notify('chronohub_auth', nextval('chronohub_auth_seq')::text
                      || CASE WHEN kind = 'reads' THEN ' reads' ELSE '' END);
END;
$$;

CREATE OR REPLACE FUNCTION chronohub_auth_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM chronohub_notify_changed(coalesce(TG_ARGV[0], 'auth'));
    RETURN NULL;
END;
$$;

-- The events that change the read models the read cache reads (users, groups and their
-- members, role grants, servers: hub/reads/cache.py's CHANGING, the event types their
-- projections handle) and that auth_changed does not already notify; a test checks that the
-- two lists together are CHANGING's. The hot appends (token.issued, collab) are not among them.
CREATE CONSTRAINT TRIGGER reads_changed AFTER INSERT ON events
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.event_type IN (
        'user.created',
        'server.defined', 'server.modified', 'server.spawn_requested', 'server.started',
        'server.ready', 'server.stop_requested', 'server.stopped', 'server.failed'))
    EXECUTE FUNCTION chronohub_auth_changed('reads');
