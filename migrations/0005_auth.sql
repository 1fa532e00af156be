-- Login, browser sessions and the OAuth2 provider (issue 4).
-- Secrets (password hashes, session and code hashes) and login-attempt counters live here,
-- OUTSIDE the event log; the events only say that something happened. oauth_clients,
-- oauth_grants and signup_requests are projections (projections/auth.py).

-- argon2 hashes of users' passwords, one per user.
CREATE TABLE credentials (
    user_id       uuid PRIMARY KEY,
    password_hash text NOT NULL,
    updated       timestamptz NOT NULL
);

-- The password chosen with a signup request, until an admin approves or rejects it.
CREATE TABLE signup_credentials (
    name          text PRIMARY KEY,
    password_hash text NOT NULL
);

-- Failed login attempts in the current window, per 'user:<name>' and per 'address:<ip>'.
CREATE TABLE login_failures (
    key          text PRIMARY KEY,
    failures     integer NOT NULL,
    window_start timestamptz NOT NULL,
    locked_until timestamptz
);

-- Browser sessions: the SHA-256 of the cookie's random secret (the cookie is also signed).
CREATE TABLE login_sessions (
    session_id text PRIMARY KEY,
    hash       bytea NOT NULL UNIQUE,
    user_id    uuid NOT NULL,
    created    timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX login_sessions_user ON login_sessions (user_id);

-- Authorization codes: single-use, short-lived, kept as the SHA-256 of the code.
CREATE TABLE oauth_codes (
    code_id               text PRIMARY KEY,
    hash                  bytea NOT NULL UNIQUE,
    client_id             text NOT NULL,
    user_id               uuid NOT NULL,
    redirect_uri          text NOT NULL,
    scopes                text[] NOT NULL,
    code_challenge        text,
    code_challenge_method text,
    expires_at            timestamptz NOT NULL
);

-- OAuth clients (projection): services (service-<name>) and single-user servers
-- (jupyterhub-user-<name>[-<server>]). The secret is an API token of the owner's.
CREATE TABLE oauth_clients (
    client_id      text PRIMARY KEY,
    kind           text NOT NULL CHECK (kind IN ('service', 'server')),
    owner          text NOT NULL,
    server_name    text NOT NULL,
    redirect_uri   text NOT NULL,
    token_id       text,
    description    text NOT NULL,
    no_confirm     boolean NOT NULL,
    allowed_scopes text[] NOT NULL,
    last_position  bigint NOT NULL
);

-- Scopes a user has approved for a client (projection of oauth.code_exchanged): asked again
-- only for more.
CREATE TABLE oauth_grants (
    user_id   uuid NOT NULL,
    client_id text NOT NULL,
    scopes    text[] NOT NULL,
    PRIMARY KEY (user_id, client_id)
);

-- Signup requests waiting for an admin (projection).
CREATE TABLE signup_requests (
    name          text PRIMARY KEY,
    request_id    uuid NOT NULL,
    requested     timestamptz NOT NULL,
    last_position bigint NOT NULL
);
