"""The hub's event types, one module per aggregate. Importing this package registers them all."""

from events.catalog import (
    auth,
    collab,
    collab_sessions,
    groups,
    projects,
    roles,
    server_records,
    servers,
    services,
    shares,
    tokens,
    users,
)

__all__ = [
    "auth",
    "collab",
    "collab_sessions",
    "groups",
    "projects",
    "roles",
    "server_records",
    "servers",
    "services",
    "shares",
    "tokens",
    "users",
]
