"""The groups read model: a group by name, groups by names, a page of groups, member ids.

The rows are the ``groups.sql`` queries' (``group_by_name``: id, name, properties as JSON
text, member names, roles), as the groups API renders them.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING
from uuid import UUID

from events import sql
from hub import errors

if TYPE_CHECKING:
    from asyncpg import Record

queries = sql.Queries(__package__ or "hub.reads", "groups.sql")


async def find(conn: sql.Connection, name: str) -> Record | None:
    """Group ``name`` (a ``group_by_name`` row), or None if there is no such group."""
    row: Record | None = await conn.fetchrow(queries["group_by_name"], name)
    return row


async def require(conn: sql.Connection, name: str) -> Record:
    """Group ``name`` (a ``group_by_name`` row); ``errors.NotFound`` if there is no such group."""
    row = await find(conn, name)
    if row is None:
        raise errors.NotFound(f"No such group: {name}")
    return row


async def named(conn: sql.Connection, names: Collection[str]) -> list[Record]:
    """Id and name of those of the named groups that exist."""
    return list(await conn.fetch(queries["groups_by_name"], list(names)))


async def page(
    conn: sql.Connection, *, offset: int, limit: int, only: Collection[str] | None = None
) -> tuple[list[Record], int]:
    """One page of groups by name and how many there are in all (``only``: just these names,
    as a filtered list scope allows; None: every group)."""
    names = None if only is None else list(only)
    rows = list(await conn.fetch(queries["groups_page"], offset, limit, names))
    if rows:
        return rows, int(rows[0]["total"])
    return rows, int(await conn.fetchval(queries["groups_count"], names))


async def member_ids(conn: sql.Connection, group_id: UUID) -> set[UUID]:
    """The ids of the group's members."""
    return {row["user_id"] for row in await conn.fetch(queries["group_member_ids"], group_id)}
