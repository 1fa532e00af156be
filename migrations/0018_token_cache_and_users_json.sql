-- Token cache invalidation (issue 20 part 4): each hub process keeps the callers its tokens
-- resolve to (hub/auth/token_cache.py) and must forget them, in every process, when an event
-- changes what they were worked out from (hub/auth/auth.sql, token_owner: tokens, their
-- owners, groups, roles, shares (and the servers they name), services). A trigger on the
-- event log sends a NOTIFY on
-- 'chronohub_auth' from inside the appending transaction: PostgreSQL delivers it if and only
-- if that transaction commits, so no code path that appends such an event can forget to tell
-- the caches. On the log rather than on the read-model tables, because a projection rebuild
-- swaps those tables for fresh copies (without their triggers). Only the event types below
-- fire it: the hot appends (token.issued, user.created, activity, collab) send nothing.
-- The same list is token_cache.INVALIDATING (a test checks that they agree).
CREATE FUNCTION chronohub_auth_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chronohub_auth', NEW.event_type);
    RETURN NULL;
END;
$$;

CREATE TRIGGER auth_changed AFTER INSERT ON events FOR EACH ROW
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

-- JupyterHub's timestamp format (ISO 8601 in UTC with a 'Z', microseconds only when there
-- are any), as hub/web/body.py's iso() writes it: for the JSON the users list has
-- PostgreSQL build (hub/reads/users.sql, users_page_json). A plain SQL function, inlined;
-- '.000000Z' can only be the end, and replace() is cheaper than a test and two formats.
CREATE FUNCTION chronohub_iso(ts timestamptz) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT replace(to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                   '.000000Z', 'Z')
$$;

-- The users list's default order (creation, then name: hub/reads/users.sql), read from an
-- index down to the page asked for rather than sorted whole at each request.
CREATE INDEX users_created ON users (created, name);
