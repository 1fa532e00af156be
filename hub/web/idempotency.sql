-- name: idempotency_find
-- The stored answer to a caller's key, unless it has expired.
SELECT fingerprint, status, headers, answer
FROM idempotency_keys
WHERE lookup = $1 AND expires > clock_timestamp();

-- name: idempotency_claim
-- Inside the request's transaction: hold the key until it commits or rolls back (false: another
-- request with the key is under way).
SELECT pg_try_advisory_xact_lock(hashtextextended(encode($1::bytea, 'hex'), 17));

-- name: idempotency_claim_session
-- For a handler that runs beside the key's row (its work commits on its own): hold the key on
-- this connection until idempotency_release, outside any transaction (false: under way).
SELECT pg_try_advisory_lock(hashtextextended(encode($1::bytea, 'hex'), 17));

-- name: idempotency_release
SELECT pg_advisory_unlock(hashtextextended(encode($1::bytea, 'hex'), 17));

-- name: idempotency_store
-- Record the answer in the request's transaction. An expired row of the same key is replaced;
-- a few other expired rows go on the way (an insert is the only time rows are added, so rows
-- are removed at the rate they come, with no sweeper task to own).
WITH gone AS (
    DELETE FROM idempotency_keys
    WHERE lookup IN (
        SELECT lookup FROM idempotency_keys
        WHERE expires <= clock_timestamp() AND lookup <> $1
        ORDER BY expires
        LIMIT 10
        FOR UPDATE SKIP LOCKED
    )
)
INSERT INTO idempotency_keys (lookup, fingerprint, status, headers, answer, expires)
VALUES ($1, $2, $3, $4::jsonb, $5, clock_timestamp() + make_interval(secs => $6))
ON CONFLICT (lookup) DO UPDATE
    SET fingerprint = EXCLUDED.fingerprint, status = EXCLUDED.status,
        headers = EXCLUDED.headers, answer = EXCLUDED.answer,
        created = clock_timestamp(), expires = EXCLUDED.expires
    WHERE idempotency_keys.expires <= clock_timestamp()
RETURNING lookup;
