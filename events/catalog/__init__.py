"""The hub's event types, one module per aggregate. Importing this package registers them all."""

from events.catalog import collab, groups, roles, servers, services, tokens, users

__all__ = ["collab", "groups", "roles", "servers", "services", "tokens", "users"]
