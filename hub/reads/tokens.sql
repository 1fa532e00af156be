-- The tokens read model (hub/reads/tokens.py): the tokens API's and the token page's reads.

-- name: user_tokens
-- oauth_client_name: the client's description, as JupyterHub shows it (null: an API token).
SELECT t.token_id, t.scopes, t.note, t.expires_at, t.created, a.last_activity, t.oauth_client,
       coalesce(c.description, t.oauth_client) AS oauth_client_name
  FROM tokens t LEFT JOIN token_activity a USING (token_id)
  LEFT JOIN oauth_clients c ON c.client_id = t.oauth_client
 WHERE t.user_id = $1
   AND (t.expires_at IS NULL OR t.expires_at > clock_timestamp())
 ORDER BY t.created, t.token_id;

-- name: user_token
SELECT t.token_id, t.scopes, t.note, t.expires_at, t.created, a.last_activity, t.oauth_client,
       coalesce(c.description, t.oauth_client) AS oauth_client_name
  FROM tokens t LEFT JOIN token_activity a USING (token_id)
  LEFT JOIN oauth_clients c ON c.client_id = t.oauth_client
 WHERE t.user_id = $1 AND t.token_id = $2
   AND (t.expires_at IS NULL OR t.expires_at > clock_timestamp());

-- name: user_client_tokens
-- The user's tokens issued to one OAuth client.
SELECT token_id FROM tokens WHERE user_id = $1 AND oauth_client = $2 ORDER BY created, token_id;
