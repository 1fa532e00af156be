"""The hub as an OAuth2 provider (``provider``) for the OAuth clients it knows (``clients``)."""
