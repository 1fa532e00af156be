-- Tokens issued through the OAuth provider remember the client they were issued to, as in
-- JupyterHub: revoking one of them revokes the user's other tokens of that client, and removing
-- the client (a server stopped, a service dropped) revokes all of its tokens.
ALTER TABLE tokens ADD COLUMN oauth_client text;
CREATE INDEX tokens_oauth_client ON tokens (oauth_client) WHERE oauth_client IS NOT NULL;
