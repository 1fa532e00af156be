-- Read models of single-user servers and the proxy's routes (projections/servers.py), and
-- server activity (telemetry, written beside the events, like the activity table).

-- One row per server a user has or had: the default server ('') and named ones. state is
-- defined (created, never started), spawning, started, ready, stopping, stopped or failed.
CREATE TABLE servers (
    user_id       uuid NOT NULL,
    server_name   text NOT NULL,
    user_name     text NOT NULL,
    display_name  text NOT NULL,
    state         text NOT NULL,
    options       jsonb NOT NULL,
    url           text,
    pid           integer,
    started       timestamptz,
    reason        text,
    token_id      text,
    last_position bigint NOT NULL,
    PRIMARY KEY (user_id, server_name)
);
CREATE INDEX servers_active ON servers (state) WHERE state NOT IN ('defined', 'stopped', 'failed');

-- The proxy's routing table: a route exists while its server is ready.
CREATE TABLE routes (
    routespec     text PRIMARY KEY,
    target        text NOT NULL,
    user_id       uuid NOT NULL,
    user_name     text NOT NULL,
    server_name   text NOT NULL,
    last_position bigint NOT NULL
);
CREATE INDEX routes_server ON routes (user_id, server_name);

-- A server's last activity (its own reports and traffic the proxy saw), moved forward only.
CREATE TABLE server_activity (
    user_id       uuid NOT NULL,
    server_name   text NOT NULL,
    last_activity timestamptz NOT NULL,
    PRIMARY KEY (user_id, server_name)
);
