-- Queries of the users projection (projections/users.py).

-- name: load
SELECT user_id, name, admin, created, updated, last_position
  FROM users
 WHERE user_id = ANY($1::uuid[]);

-- name: delete
DELETE FROM users WHERE user_id = ANY($1::uuid[]);

-- name: upsert
INSERT INTO users AS u (user_id, name, admin, created, updated, last_position)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::boolean[], $4::timestamptz[],
                     $5::timestamptz[], $6::bigint[])
ON CONFLICT (user_id) DO UPDATE
   SET name = excluded.name, admin = excluded.admin, created = excluded.created,
       updated = excluded.updated, last_position = excluded.last_position;
