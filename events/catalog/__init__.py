"""The hub's event types, one module per aggregate. Importing this package registers them all."""

from events.catalog import (
    auth,  # login, sessions, OAuth (issue 4)
    groups,
    roles,
    servers,
    services,
    tokens,
    users,
)

__all__ = ["auth", "groups", "roles", "servers", "services", "tokens", "users"]
