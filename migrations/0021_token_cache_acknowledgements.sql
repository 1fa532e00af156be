-- Revocation immediate across processes (issue 20 part 4): a request that committed an event
-- changing what tokens resolve to answers only once every other live hub process has emptied
-- its token cache (hub/auth/token_acks.py).
--
-- Each invalidating transaction's notification now carries a number from chronohub_auth_seq,
-- and the numbers follow commit order: the trigger runs at commit (a deferred constraint
-- trigger) and takes a transaction-scoped advisory lock before drawing its number, held until
-- the commit is done, so the next invalidating transaction draws a larger number only after
-- this one committed. PostgreSQL delivers notifications in commit order, so a process that
-- has handled notification n has handled every earlier one: acknowledging "seen >= n" is
-- enough. Invalidating events are rare (revocations, group and role changes): serialising
-- their commits costs nothing measurable, and the hot appends (token.issued, activity,
-- collab) fire nothing. One notification per transaction, however many such events it holds.
CREATE SEQUENCE chronohub_auth_seq;

-- The hub processes whose token caches listen: renewed by each one's heartbeat while its
-- LISTEN connection is up; a row whose alive_until passed is not waited for (and is deleted
-- by the next heartbeat of any process). seen: the largest notification number it handled.
CREATE TABLE token_cache_members (
    member      text PRIMARY KEY,
    seen        bigint NOT NULL DEFAULT 0,
    alive_until timestamptz NOT NULL
);

CREATE OR REPLACE FUNCTION chronohub_auth_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('chronohub.auth_notified', true), '') = '' THEN
        -- the key is a constant nothing else uses; token_acks.ORDER_LOCK takes it too
        PERFORM pg_advisory_xact_lock(7266117215243641);
        PERFORM set_config('chronohub.auth_notified', 'y', true);
        PERFORM pg_notify('chronohub_auth', nextval('chronohub_auth_seq')::text);
    END IF;
    RETURN NULL;
END;
$$;

DROP TRIGGER auth_changed ON events;

-- The same event types as 0018; token_cache.INVALIDATING has them too (a test checks that
-- they agree).
CREATE CONSTRAINT TRIGGER auth_changed AFTER INSERT ON events
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.event_type IN (
        'token.revoked',
        'user.deleted', 'user.renamed', 'user.admin_changed',
        'group.created', 'group.deleted', 'group.members_added', 'group.members_removed',
        'group.properties_set',
        'role.defined', 'role.granted', 'role.removed', 'role.revoked',
        'share.granted', 'share.revoked', 'share.code_accepted',
        'service.registered', 'service.removed',
        'oauth_client.removed',
        'server.removed', 'server.renamed'))
    EXECUTE FUNCTION chronohub_auth_changed();
