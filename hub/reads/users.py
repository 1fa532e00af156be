"""The users read model: a user by name, users by names, a page of users, members of groups.

The rows are the ``users.sql`` queries' (``user_by_name``: id, name, admin, created, last
activity, groups, roles), as the users API renders them.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Literal

from events import sql
from hub import errors

if TYPE_CHECKING:
    from asyncpg import Record

queries = sql.Queries(__package__ or "hub.reads", "users.sql")

State = Literal["active", "ready", "inactive"]


async def find(conn: sql.Connection, name: str) -> Record | None:
    """User ``name`` (a ``user_by_name`` row), or None if there is no such user."""
    row: Record | None = await conn.fetchrow(queries["user_by_name"], name)
    return row


async def require(conn: sql.Connection, name: str) -> Record:
    """User ``name`` (a ``user_by_name`` row); ``errors.NotFound`` if there is no such user."""
    row = await find(conn, name)
    if row is None:
        raise errors.NotFound(f"No such user: {name}")
    return row


async def lock(conn: sql.Connection, name: str) -> None:
    """Lock user ``name``'s row (if there is one) until the caller's transaction ends; call
    it before appending the user's deletion or rename, before reading the user. A batch of
    new tokens locks its owners' rows (``token_secrets_beside``): it then either commits
    first, its ``token.issued`` before the change in the log (which a deletion's tokens then
    follow), or waits for the change and is refused. Without the lock a token could be
    issued between the change's event and its projection's write, after it in the log."""
    await conn.execute(queries["user_lock"], name)


async def exists(conn: sql.Connection, name: str) -> bool:
    """Whether user ``name`` exists."""
    return await find(conn, name) is not None


async def named(conn: sql.Connection, names: Collection[str]) -> list[Record]:
    """Id, name and admin flag of those of the named users that exist."""
    return list(await conn.fetch(queries["users_by_name"], list(names)))


async def page(
    conn: sql.Connection,
    *,
    offset: int,
    limit: int,
    name_filter: str | None = None,
    only: Collection[str] | None = None,
    state: str | None = None,
    sort: str = "id",
) -> tuple[list[Record], int]:
    """One page of users and how many match in all.

    ``name_filter`` is a name substring, ``only`` the names a filtered list scope covers (None:
    everyone), ``state`` one of ``State`` (None: any), ``sort`` ``id``, ``name`` or
    ``last_activity``, ``-`` before it for descending.
    """
    query = queries["users_page_by_activity" if "last_activity" in sort else "users_page"]
    names = None if only is None else list(only)
    rows = list(await conn.fetch(query, offset, limit, name_filter, names, state, sort))
    if rows:
        return rows, int(rows[0]["total"])
    total = await conn.fetchval(queries["users_count"], name_filter, names, state)
    return rows, int(total)


async def page_json(
    conn: sql.Connection, *, offset: int, limit: int, hidden: list[str], include_stopped: bool
) -> Record:
    """A page of every user in the default order, as one JSON array built by PostgreSQL (UTF-8
    bytes: ``users_page_json``), the fields in ``hidden`` left out; with ``count`` (on this page),
    ``total`` and ``with_servers`` (ids of the page's users with servers to show)."""
    rows: list[Record] = await conn.fetch(
        queries["users_page_json"], offset, limit, hidden, include_stopped
    )
    return rows[0]  # one row, whatever matches


async def members_of(conn: sql.Connection, groups: Collection[str]) -> set[str]:
    """The names of the members of the named groups."""
    rows: list[Record] = await conn.fetch(queries["group_member_names"], sorted(groups))
    return {row["user_name"] for row in rows}
