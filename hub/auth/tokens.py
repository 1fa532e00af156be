"""API tokens: made at random, kept only as a SHA-256 hash outside the event log.

A token is 128 random bits as 32 hex characters (the shape of JupyterHub's). One round of
SHA-256 is enough for a secret of that entropy (a slow KDF only matters for guessable
secrets such as passwords) and keeps the lookup on every request cheap.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from events import models, sql, store
from events.catalog import tokens as token_events

queries = sql.Queries(__package__ or "hub.auth", "auth.sql")

PREFIX_LENGTH = 4


def new_secret() -> str:
    """A fresh token: 32 hex characters from the OS's random source."""
    return secrets.token_hex(16)


def new_token_id() -> str:
    """A token's public id: short, random, never derived from the secret."""
    return "t" + secrets.token_hex(6)


def digest(secret: str) -> bytes:
    """What is stored and looked up for a token."""
    return hashlib.sha256(secret.encode()).digest()


@dataclass(frozen=True)
class Fresh:
    """A token about to be issued: its id and its secret."""

    token_id: str
    secret: str

    @classmethod
    def new(cls) -> Fresh:
        """A new id and a new secret."""
        return cls(new_token_id(), new_secret())


async def owner_storing_secret(conn: sql.Connection, name: str, fresh: Fresh) -> Any | None:
    """User ``name`` (id, name, admin flag, groups; None: no such user), read in the round trip
    that stores ``fresh``'s hash; then ``issue(..., stored=fresh)`` in the same transaction."""
    secret = fresh.secret
    return await conn.fetchrow(
        queries["token_owner_storing_secret"],
        name, fresh.token_id, secret[:PREFIX_LENGTH], digest(secret),
    )  # fmt: skip


@dataclass(frozen=True)
class Issued:
    """A token just issued: its id, this once the secret itself, and when it was issued (the
    event's time, which the tokens read model records as its ``created``)."""

    token_id: str
    secret: str
    expires_at: datetime | None
    created: datetime


async def issue(
    session: store.Session,
    *,
    owner_name: str,
    user_id: UUID | None = None,
    service: str | None = None,
    scopes: list[str],
    note: str | None,
    expires_in: int | None,
    now: datetime,
    metadata: models.Metadata,
    secret: str | None = None,
    oauth_client: str | None = None,
    stored: Fresh | None = None,
) -> Issued:
    """Append ``token.issued`` and store the secret's hash, in the session's transaction.

    ``secret`` is for tokens given in configuration; otherwise a new one is made.
    ``oauth_client`` names the OAuth client a token is issued to by the provider.
    ``stored`` is a token whose hash this transaction stored already
    (``owner_storing_secret``): it is the one issued.
    """
    token_id = stored.token_id if stored is not None else new_token_id()
    secret = stored.secret if stored is not None else secret or new_secret()
    expires_at = now + timedelta(seconds=expires_in) if expires_in else None
    appended = await session.append(
        token_events.stream_id(token_id),
        [
            token_events.TokenIssued(
                token_id=token_id,
                user_id=user_id,
                service=service,
                owner_name=owner_name,
                scopes=scopes,
                note=note,
                expires_at=expires_at,
                oauth_client=oauth_client,
            )
        ],
        expected=store.NO_STREAM,
        metadata=metadata,
    )
    if stored is None:
        await session.conn.execute(
            queries["token_store_secret"], token_id, secret[:PREFIX_LENGTH], digest(secret)
        )
    return Issued(token_id, secret, expires_at, appended.events[0].recorded_at)
