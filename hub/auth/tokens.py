"""API tokens: made at random, kept only as a SHA-256 hash outside the event log.

A token is 128 random bits as 32 hex characters (the shape of JupyterHub's). One round of
SHA-256 is enough for a secret of that entropy (a slow KDF only matters for guessable
secrets such as passwords) and keeps the lookup on every request cheap.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from events import group_commit, models, sql, store
from events.catalog import tokens as token_events
from hub import errors

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


async def new_token_owners(conn: sql.Connection, names: list[str]) -> dict[str, Any]:
    """Users ``names`` (id, name, admin flag, groups) as new tokens' owners, by name; those
    that do not exist are left out. Then ``issue_to_user``, which checks again that the user
    is still there."""
    rows = await conn.fetch(queries["new_token_owners"], names)
    return {row["name"]: row for row in rows}


def owner_not_found(name: str) -> errors.Forbidden:
    """JupyterHub's answer, one message for "no such user" and "not yours"."""
    return errors.Forbidden(f"User {name} not found or no permissions to generate tokens")


@dataclass(frozen=True)
class SecretBeside(group_commit.Beside):
    """A new user token's hash, stored in the transaction of its ``token.issued`` if its owner
    is still there under the name the request gave (``token_secrets_beside``); otherwise the
    append is refused with ``owner_not_found``. Concurrent tokens' hashes go in one statement
    when their appends share a batch (``events.group_commit``)."""

    fresh: Fresh
    user_id: UUID
    owner_name: str

    @classmethod
    async def write_many(
        cls, conn: sql.Connection, items: Sequence[SecretBeside]
    ) -> list[Exception | None]:
        """Store the hashes of ``items``; each refused one's error (its owner gone). One
        stored already by an earlier attempt of its append (the same secret) counts as
        stored: the append then finds its event by id, and answers as the first time."""
        hashes = [digest(item.fresh.secret) for item in items]
        rows = await conn.fetch(
            queries["token_secrets_beside"],
            [item.fresh.token_id for item in items],
            [item.fresh.secret[:PREFIX_LENGTH] for item in items],
            hashes,
            [item.user_id for item in items],
            [item.owner_name for item in items],
        )
        stored = {row["token_id"] for row in rows}
        missed = [item.fresh.token_id for item in items if item.fresh.token_id not in stored]
        there: dict[str, bytes] = {}
        if missed:  # refused, or a retry's: a round trip only then
            rows = await conn.fetch(queries["token_secrets_of"], missed)
            there = {row["token_id"]: row["hash"] for row in rows}
        answers: list[Exception | None] = []
        for item, hashed in zip(items, hashes, strict=True):
            token_id = item.fresh.token_id
            if token_id in stored or there.get(token_id) == hashed:
                answers.append(None)
            elif token_id in there:
                answers.append(errors.Conflict(f"Token {token_id} has another secret already"))
            else:
                answers.append(owner_not_found(item.owner_name))
        return answers


async def issue_to_user(
    event_store: store.EventStore,
    *,
    owner_name: str,
    user_id: UUID,
    scopes: list[str],
    note: str | None,
    expires_in: int | None,
    now: datetime,
    metadata: models.Metadata,
) -> Issued:
    """Issue a new token to user ``owner_name`` (``user_id``), as read by ``new_token_owners``
    and judged by the caller: ``token.issued`` appended with its hash beside it, with other
    concurrent appends (one batch, one commit: ``events.group_commit``), or in the transaction
    of ``EventStore.pinned`` around it. ``errors.Forbidden`` if the user is gone meanwhile."""
    fresh = Fresh.new()
    expires_at = now + timedelta(seconds=expires_in) if expires_in else None
    appended = await event_store.append(
        token_events.stream_id(fresh.token_id),
        [
            token_events.TokenIssued(
                token_id=fresh.token_id,
                user_id=user_id,
                owner_name=owner_name,
                scopes=scopes,
                note=note,
                expires_at=expires_at,
            )
        ],
        expected=store.NO_STREAM,
        metadata=metadata,
        beside=SecretBeside(fresh, user_id, owner_name),
    )
    return Issued(fresh.token_id, fresh.secret, expires_at, appended.events[0].recorded_at)


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
) -> Issued:
    """Append ``token.issued`` and store the secret's hash, in the session's transaction.

    ``secret`` is for tokens given in configuration; otherwise a new one is made.
    ``oauth_client`` names the OAuth client a token is issued to by the provider.
    """
    token_id = new_token_id()
    secret = secret or new_secret()
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
    await session.conn.execute(
        queries["token_store_secret"], token_id, secret[:PREFIX_LENGTH], digest(secret)
    )
    return Issued(token_id, secret, expires_at, appended.events[0].recorded_at)
