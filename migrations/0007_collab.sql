-- Real-time collaboration (collab/): rooms, their CRDT updates and snapshots. These tables are
-- collab's own, not projections: keystrokes are telemetry, not hub events. Room lifecycle
-- (created, opened, closed, compacted, participants joined and left) goes to the event log.

-- One row per room. last_seq hands out the room's update sequence numbers: an append updates
-- this row, so appends to one room commit in sequence order and a reader that has seen
-- sequence n never finds a later-committing update below n.
CREATE TABLE collab_rooms (
    room       text PRIMARY KEY,
    owner      text,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_seq   bigint NOT NULL DEFAULT 0,
    CONSTRAINT collab_rooms_name CHECK (room ~ '^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,199}$')
);

-- Every applied update (a Yjs v1 update), appended before it is broadcast.
CREATE TABLE collab_updates (
    room       text NOT NULL REFERENCES collab_rooms (room) ON DELETE CASCADE,
    seq        bigint NOT NULL,
    data       bytea NOT NULL,
    author     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (room, seq)
);

-- Which hub processes have a room loaded. An append learns from it, in the same statement,
-- whether any other process needs a wake-up (NOTIFY); a process that died leaves its rows,
-- which only cost needless notifications.
CREATE TABLE collab_presence (
    room      text NOT NULL REFERENCES collab_rooms (room) ON DELETE CASCADE,
    process   text NOT NULL,
    opened_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (room, process)
);

-- A compaction's result: the room's whole document up to and including update seq.
-- A room loads from its latest snapshot plus the updates after it.
CREATE TABLE collab_snapshots (
    room       text NOT NULL REFERENCES collab_rooms (room) ON DELETE CASCADE,
    seq        bigint NOT NULL,
    data       bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (room, seq)
);
