"""What the ``chronohub`` command does to users and tokens, as the system actor."""

from __future__ import annotations

from datetime import UTC, datetime

from events import models, store
from hub import errors
from hub.auth import access, scopes, tokens
from hub.reads import users as users_read

CLI = models.Metadata(actor=models.Actor(kind="system", name="chronohub-cli"))


async def issue_token(
    event_store: store.EventStore,
    user: str,
    *,
    note: str | None,
    expires_in: int | None,
    requested_scopes: list[str] | None = None,
) -> tokens.Issued:
    """Issue a token for an existing user, limited to scopes the user holds."""
    requested = list(requested_scopes) if requested_scopes else [scopes.INHERIT]
    if expires_in is not None and expires_in < 1:
        raise errors.BadRequest("--expires-in must be a positive number of seconds")
    async with event_store.session() as session:
        row = await users_read.require(session.conn, user)
        await access.check_token_request(session.conn, row, requested)
        return await tokens.issue(
            session,
            owner_name=row["name"],
            user_id=row["user_id"],
            scopes=requested,
            note=note,
            expires_in=expires_in,
            now=datetime.now(UTC),
            metadata=CLI,
        )
