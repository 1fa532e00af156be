-- Read models of shared servers (projections/shares.py): who was given which scopes on whose
-- server, and the share codes that give them. A share's scopes are kept as bare scope names
-- ('access:servers'); each applies to the share's server only, and the filter
-- (!server=<owner>/<server_name>) is added with the owner's current name when it is read,
-- so renaming the owner keeps the share.

-- recipient_kind is 'user' (recipient_id = user id) or 'group' (group id); a group's members
-- hold its share while they are in it.
CREATE TABLE shares (
    owner_id       uuid NOT NULL,
    server_name    text NOT NULL,
    recipient_kind text NOT NULL CHECK (recipient_kind IN ('user', 'group')),
    recipient_id   uuid NOT NULL,
    scopes         text[] NOT NULL,
    created        timestamptz NOT NULL,
    last_position  bigint NOT NULL,
    PRIMARY KEY (owner_id, server_name, recipient_kind, recipient_id)
);
-- What a request's caller was given: looked up with every token (hub/auth/auth.sql).
CREATE INDEX shares_recipient ON shares (recipient_kind, recipient_id);

-- A share code's public id is sc_<number>; the code itself is kept only as a hash, beside
-- the events (share_code_secrets), never in the log or in this table.
CREATE TABLE share_codes (
    code_id           text PRIMARY KEY,
    number            bigint NOT NULL,
    owner_id          uuid NOT NULL,
    server_name       text NOT NULL,
    scopes            text[] NOT NULL,
    created           timestamptz NOT NULL,
    expires_at        timestamptz NOT NULL,
    exchange_count    integer NOT NULL,
    last_exchanged_at timestamptz,
    last_position     bigint NOT NULL
);
CREATE INDEX share_codes_server ON share_codes (owner_id, server_name, number);

-- Not a projection: the SHA-256 of each live share code (128-bit random, one round is
-- enough), written in the transaction that appends its event, deleted with the code.
CREATE TABLE share_code_secrets (
    code_id text PRIMARY KEY,
    hash    bytea NOT NULL UNIQUE
);

-- The numbers of share codes' ids (sc_1, sc_2…), never reused.
CREATE SEQUENCE share_code_numbers;
