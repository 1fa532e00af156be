"""The hub's event types, one module per aggregate. Importing this package registers them all."""

from events.catalog import groups, roles, servers, services, tokens, users

__all__ = ["groups", "roles", "servers", "services", "tokens", "users"]
