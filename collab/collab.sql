-- Queries of collab/persistence.py: rooms, their updates and snapshots (migrations/0005).

-- name: create_room
INSERT INTO collab_rooms (room, owner) VALUES ($1, $2)
ON CONFLICT (room) DO NOTHING
RETURNING room;

-- name: room_info
SELECT room, owner, last_seq FROM collab_rooms WHERE room = $1;

-- name: append_updates
-- Takes the room row's lock for the statement's transaction, so the room's updates commit in
-- sequence order (readers never skip one); one round trip for a whole batch. $4 is this
-- transaction's synchronous_commit ('on' or 'off'; see RoomStore): set inside the statement,
-- which is its own transaction, so it needs no BEGIN/COMMIT round trips. The batch's sequence
-- numbers are base + 1 .. base + appended (the counter reserves them in one piece): one row
-- comes back, not one per update. No row: the room does not exist.
WITH commit_mode AS (
    SELECT set_config('synchronous_commit', $4::text, true) AS mode
),
counter AS (
    UPDATE collab_rooms SET last_seq = last_seq + cardinality($2::bytea[])
    WHERE room = $1
    RETURNING last_seq - cardinality($2::bytea[]) AS base
),
appended AS (
    INSERT INTO collab_updates (room, seq, data, author)
    SELECT $1, counter.base + u.ord, u.data, u.author
    FROM commit_mode, counter,
        unnest($2::bytea[], $3::text[]) WITH ORDINALITY AS u(data, author, ord)
    RETURNING seq
)
SELECT counter.base, (SELECT count(*) FROM appended) AS appended,
    EXISTS (SELECT 1 FROM collab_presence p WHERE p.room = $1 AND p.process <> $5) AS shared
FROM counter;

-- name: rooms_state
-- Of these rooms (the janitor's poll, one statement for all of a process's rooms): the last
-- sequence number each has handed out, and whether another process holds it too.
SELECT r.room, r.last_seq,
    EXISTS (SELECT 1 FROM collab_presence p WHERE p.room = r.room AND p.process <> $2) AS shared
FROM collab_rooms r WHERE r.room = ANY($1::text[]);

-- name: enter_room
-- Also says whether another process holds the room already.
INSERT INTO collab_presence (room, process) VALUES ($1, $2)
ON CONFLICT (room, process) DO UPDATE SET opened_at = clock_timestamp()
RETURNING EXISTS (SELECT 1 FROM collab_presence p WHERE p.room = $1 AND p.process <> $2);

-- name: leave_room
DELETE FROM collab_presence WHERE room = $1 AND process = $2;

-- name: leave_rooms
DELETE FROM collab_presence WHERE room = ANY($1::text[]) AND process = $2;

-- name: latest_snapshot
SELECT seq, data, authors FROM collab_snapshots WHERE room = $1 ORDER BY seq DESC LIMIT 1;

-- name: updates_after
SELECT seq, data, author FROM collab_updates WHERE room = $1 AND seq > $2 ORDER BY seq;

-- name: compaction_lock
SELECT pg_try_advisory_xact_lock(hashtextextended('chronohub-collab-compact:' || $1, 0));

-- name: insert_snapshot
INSERT INTO collab_snapshots (room, seq, data, authors) VALUES ($1, $2, $3, $4);

-- name: delete_updates_upto
DELETE FROM collab_updates WHERE room = $1 AND seq <= $2;

-- name: delete_snapshots_before
DELETE FROM collab_snapshots WHERE room = $1 AND seq < $2;

-- name: update_authors
-- Who wrote the room's updates (``kind:name`` labels), first writer first: those the latest
-- snapshot folded in, then those of the updates after it.
WITH snapshot AS (
    SELECT seq, authors FROM collab_snapshots WHERE room = $1 ORDER BY seq DESC LIMIT 1
),
everyone AS (
    SELECT a.author, ARRAY[0, a.ord] AS rank
      FROM snapshot, unnest(snapshot.authors) WITH ORDINALITY AS a(author, ord)
    UNION ALL
    SELECT u.author, ARRAY[1, u.seq] AS rank
      FROM collab_updates u
     WHERE u.room = $1 AND u.seq > coalesce((SELECT seq FROM snapshot), 0)
)
SELECT author FROM everyone GROUP BY author ORDER BY min(rank);
