-- Read models of the REST API (projections/groups.py, tokens.py, services.py, roles.py), the
-- secrets kept outside the event log, and coalesced activity. Projections own their tables;
-- token_secrets and activity are not projections: they are written beside the events.

CREATE TABLE groups (
    group_id      uuid PRIMARY KEY,
    name          text NOT NULL,
    properties    jsonb NOT NULL,
    created       timestamptz NOT NULL,
    last_position bigint NOT NULL,
    CONSTRAINT groups_name_key UNIQUE (name) DEFERRABLE INITIALLY IMMEDIATE
);

CREATE TABLE group_members (
    group_id uuid NOT NULL,
    user_id  uuid NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);

CREATE TABLE services (
    name          text PRIMARY KEY,
    admin         boolean NOT NULL,
    url           text,
    created       timestamptz NOT NULL,
    last_position bigint NOT NULL
);

CREATE TABLE roles (
    name          text PRIMARY KEY,
    description   text NOT NULL,
    scopes        text[] NOT NULL,
    last_position bigint NOT NULL
);

-- principal_kind is 'user' (principal = user id), 'group' (group id) or 'service' (name).
CREATE TABLE role_grants (
    role           text NOT NULL,
    principal_kind text NOT NULL,
    principal      text NOT NULL,
    PRIMARY KEY (role, principal_kind, principal)
);
CREATE INDEX role_grants_principal ON role_grants (principal_kind, principal);

-- Token metadata; the owner is a user (user_id) or a service (service).
CREATE TABLE tokens (
    token_id      text PRIMARY KEY,
    user_id       uuid,
    service       text,
    scopes        text[] NOT NULL,
    note          text,
    expires_at    timestamptz,
    created       timestamptz NOT NULL,
    last_position bigint NOT NULL,
    CHECK ((user_id IS NULL) <> (service IS NULL))
);
CREATE INDEX tokens_user ON tokens (user_id);

-- The only place a token is kept: its SHA-256 (tokens are 128-bit random, one round is
-- enough), with a short prefix to recognise it. Never in the event log.
CREATE TABLE token_secrets (
    token_id text PRIMARY KEY,
    prefix   text NOT NULL,
    hash     bytea NOT NULL UNIQUE
);

-- Activity is telemetry, not a hub action: one row per user and server, moved forward only.
CREATE TABLE activity (
    user_id       uuid NOT NULL,
    server_name   text NOT NULL,
    last_activity timestamptz NOT NULL,
    PRIMARY KEY (user_id, server_name)
);

CREATE TABLE token_activity (
    token_id      text PRIMARY KEY,
    last_activity timestamptz NOT NULL
);
