"""The hub's event types, one module per aggregate. Importing this package registers them all."""

from events.catalog import collab_sessions, groups, roles, servers, services, tokens, users

__all__ = ["collab_sessions", "groups", "roles", "servers", "services", "tokens", "users"]
