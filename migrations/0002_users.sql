-- Read model of users, owned by projections/users.py. Derived only from events, so it can be rebuilt.

CREATE TABLE users (
    user_id      uuid PRIMARY KEY,
    name         text NOT NULL,
    admin        boolean NOT NULL,
    created      timestamptz NOT NULL,
    updated      timestamptz NOT NULL,
    last_position bigint NOT NULL,
    -- checked at the end of each statement, so a batch may swap two names
    CONSTRAINT users_name_key UNIQUE (name) DEFERRABLE INITIALLY IMMEDIATE
);
