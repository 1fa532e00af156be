-- Queries of collab/group_commit.py: the update batches of many rooms appended at once
-- (the one-room statement, append_updates, is in collab.sql).

-- name: append_rooms
-- The batches of many rooms in one statement: $1 the rooms (each once), $2 how many updates
-- each brings; then per update, in order, $3 its room, $4 its place in its room's batch (1, 2,
-- ...), $5 its data, $6 its author; $7 and $8 as in append_updates. The rooms' rows are locked
-- in name order before any is changed (``locked``: a locking SELECT sorts, then locks), so two
-- processes' statements over the same rooms queue instead of deadlocking; each room's numbers
-- come in one piece, as in append_updates, and commit in sequence order. A room that does not
-- exist has no row in the answer, and none of its updates is written; the others are.
WITH commit_mode AS (
    SELECT set_config('synchronous_commit', $7::text, true) AS mode
),
locked AS (
    SELECT r.room FROM collab_rooms r
    WHERE r.room = ANY($1::text[])
    ORDER BY r.room
    FOR NO KEY UPDATE
),
batch AS (
    SELECT b.room, b.n FROM unnest($1::text[], $2::int[]) AS b(room, n)
),
counter AS (
    UPDATE collab_rooms r SET last_seq = r.last_seq + batch.n
    FROM locked JOIN batch ON batch.room = locked.room
    WHERE r.room = locked.room
    RETURNING r.room, r.last_seq - batch.n AS base
),
appended AS (
    INSERT INTO collab_updates (room, seq, data, author)
    SELECT u.room, counter.base + u.k, u.data, u.author
    FROM commit_mode, counter
    JOIN unnest($3::text[], $4::int[], $5::bytea[], $6::text[]) AS u(room, k, data, author)
        ON u.room = counter.room
    RETURNING room
),
written AS (
    SELECT room, count(*) AS appended FROM appended GROUP BY room
)
SELECT counter.room, counter.base, coalesce(written.appended, 0) AS appended,
    EXISTS (
        SELECT 1 FROM collab_presence p WHERE p.room = counter.room AND p.process <> $8
    ) AS shared
FROM counter LEFT JOIN written ON written.room = counter.room;
