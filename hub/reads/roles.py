"""The roles read model: a role as the projection holds it (name, description, scopes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from events import sql

if TYPE_CHECKING:
    from asyncpg import Record

queries = sql.Queries(__package__ or "hub.reads", "roles.sql")


async def find(conn: sql.Connection, name: str) -> Record | None:
    """Role ``name``, or None if no such role is defined (the default roles are not rows)."""
    row: Record | None = await conn.fetchrow(queries["role_by_name"], name)
    return row
