-- Queries of hub/auth/authenticators/auth_state.py: encrypted auth_state, one per user.

-- name: auth_state_get
SELECT encrypted FROM auth_states WHERE user_id = $1;

-- name: auth_state_set
INSERT INTO auth_states (user_id, encrypted, updated) VALUES ($1, $2, $3)
ON CONFLICT (user_id) DO UPDATE SET encrypted = excluded.encrypted, updated = excluded.updated;

-- name: auth_state_delete
DELETE FROM auth_states WHERE user_id = $1;
