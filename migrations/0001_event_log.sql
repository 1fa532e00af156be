-- The event log: one insert-only table of events.
--
-- Optimistic concurrency rests on the unique (stream_id, stream_version) key alone: an append
-- computes the next version from the stream's last one, so two appenders racing for the same
-- version cannot both commit, and the loser gets a clean unique violation. (A separate row
-- per stream would cost a second write on every append.)

CREATE TABLE events (
    global_position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- insertion order, may have holes
    tx_id           xid8 NOT NULL DEFAULT pg_current_xact_id(),       -- commit-visibility fence
    stream_id       text NOT NULL,
    stream_version  bigint NOT NULL CHECK (stream_version > 0),
    event_id        uuid NOT NULL,                                    -- idempotency key, chosen by the client
    event_type      text NOT NULL,
    schema_version  smallint NOT NULL CHECK (schema_version > 0),
    data            jsonb NOT NULL,
    metadata        jsonb NOT NULL,
    actor           text NOT NULL,                                    -- denormalised for audit queries
    recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version),
    CONSTRAINT events_event_id_key UNIQUE (event_id)
);

CREATE INDEX events_fence ON events (tx_id, global_position);
CREATE INDEX events_recorded_at ON events USING brin (recorded_at);
-- Every index is paid for on every append: one on (event_type, position) and one on
-- (actor, position) together cost ~30 % of 8-writer append throughput here. Audit queries
-- scan the fence index from a checkpoint; add such indexes with the queries that need them.

-- The log is immutable: only an audited administrative tool may ever change it.
CREATE FUNCTION events_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER events_immutable BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_immutable();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_immutable();

-- Where each asynchronous projection stands, written in the same transaction as its read model.
CREATE TABLE projection_checkpoints (
    name       text PRIMARY KEY,
    tx_id      xid8 NOT NULL DEFAULT '0',
    position   bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
