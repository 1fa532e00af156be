-- JupyterHub authenticators' auth_state (hub/auth/authenticators/auth_state.py): what the
-- authenticator returned at login (upstream access and refresh tokens, LDAP attributes…),
-- Fernet-encrypted with the crypt_key / JUPYTERHUB_CRYPT_KEY keys. It is kept here, outside
-- the event log, as password hashes are kept in credentials: the log says only that the user
-- logged in. Replaced at each login that returns one.
CREATE TABLE auth_states (
    user_id    uuid PRIMARY KEY,
    encrypted  bytea NOT NULL,
    updated    timestamptz NOT NULL
);
