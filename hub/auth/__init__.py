"""Who is calling and what they may do: scopes and roles, tokens, login cookies, credentials,
signups, login throttling, authenticators and the OAuth2 provider."""
