"""The tokens read model: a user's live tokens (API tokens and those of OAuth clients).

The rows are the ``tokens.sql`` queries' (id, scopes, note, expiry, creation, last activity,
OAuth client and its name), as the tokens API and the token page show them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from events import sql
from hub import errors

if TYPE_CHECKING:
    from asyncpg import Record

queries = sql.Queries(__package__ or "hub.reads", "tokens.sql")


async def of_user(conn: sql.Connection, user_id: UUID) -> list[Record]:
    """The user's tokens that have not expired, oldest first."""
    return list(await conn.fetch(queries["user_tokens"], user_id))


async def find(conn: sql.Connection, user_id: UUID, token_id: str) -> Record | None:
    """The user's token ``token_id``, or None if it does not exist, is not theirs or expired."""
    row: Record | None = await conn.fetchrow(queries["user_token"], user_id, token_id)
    return row


async def require(conn: sql.Connection, user_id: UUID, token_id: str) -> Record:
    """The user's token ``token_id``; ``errors.NotFound`` if ``find`` finds none."""
    row = await find(conn, user_id, token_id)
    if row is None:
        raise errors.NotFound(f"No such token: {token_id}")
    return row


async def of_client(conn: sql.Connection, user_id: UUID, client_id: str) -> list[str]:
    """The ids of the user's tokens issued to OAuth client ``client_id``."""
    rows = await conn.fetch(queries["user_client_tokens"], user_id, client_id)
    return [row["token_id"] for row in rows]
