-- The queries of bench/scale.py (`make bench-scale`): filling the event log fast with events
-- of real shapes that the users projection accepts, rebuilt over them afterwards.

-- name: fill_users_created
-- user.created for users $1 <= u < $2: stream user-<md5 uuid>, version 1, names u00000...
INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, data,
                    metadata, actor, recorded_at)
SELECT 'user-' || md5('scale' || u)::uuid,
       1,
       gen_random_uuid(),
       'user.created',
       1,
       jsonb_build_object('user_id', md5('scale' || u)::uuid,
                          'name', 'u' || lpad(u::text, 5, '0'), 'admin', false),
       '{"actor": {"kind": "user", "name": "admin"}, "request_id": "bench-scale",
         "correlation_id": null, "causation_id": null, "client_address": "127.0.0.1"}'::jsonb,
       'user:admin',
       timestamptz '2026-01-01' + u * interval '1 millisecond'
  FROM generate_series($1::int, $2::int - 1) AS u
 ORDER BY u;

-- name: fill_admin_changed
-- user.admin_changed for rounds $1 <= k < $2 over users 0 <= u < $3 (version k + 1; admin on
-- odd rounds, off on even ones: an even number of rounds leaves every user as created),
-- interleaved so that one user's events spread over the whole log
INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, data,
                    metadata, actor, recorded_at)
SELECT 'user-' || md5('scale' || u)::uuid,
       k + 1,
       gen_random_uuid(),
       'user.admin_changed',
       1,
       jsonb_build_object('user_id', md5('scale' || u)::uuid, 'admin', k % 2 = 1),
       '{"actor": {"kind": "user", "name": "admin"}, "request_id": "bench-scale",
         "correlation_id": null, "causation_id": null, "client_address": "127.0.0.1"}'::jsonb,
       'user:admin',
       timestamptz '2026-01-02' + (k * $3::int + u) * interval '1 millisecond'
  FROM generate_series($1::int, $2::int - 1) AS k, generate_series(0, $3::int - 1) AS u
 ORDER BY k, u;

-- name: event_count
SELECT count(*) FROM events;

-- name: middle_position
SELECT global_position FROM events ORDER BY global_position OFFSET $1 LIMIT 1;

-- name: user_ids
SELECT user_id, name FROM users ORDER BY name;

-- name: event_unique_constraints
-- The log's unique constraints but its primary key: dropped while the log fills, then added
-- again with these very definitions (an index built once, sorted, is far cheaper than one
-- grown row by row in random order: the event ids are random uuids)
SELECT conname AS name, pg_get_constraintdef(oid) AS definition
  FROM pg_constraint
 WHERE conrelid = 'events'::regclass AND contype = 'u'
 ORDER BY conname;

-- name: event_plain_indexes
-- The log's other indexes (the fence, time, data), dropped and built again the same way
SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS definition
  FROM pg_index i
 WHERE i.indrelid = 'events'::regclass
   AND NOT i.indisprimary
   AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
 ORDER BY 1;
