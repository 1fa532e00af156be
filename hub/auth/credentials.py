"""Passwords: argon2 hashes in the ``credentials`` table, outside the event log.

The event (``user.password_set``) says only that a password was set, by whom. Hashing and
checking run in a worker thread: argon2 is deliberately slow (tens of milliseconds of CPU)
and would otherwise stall every other request on the event loop.
"""

from __future__ import annotations

import asyncio
import functools
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

import argon2

from events import models, sql, store
from events.catalog import auth as auth_events
from events.catalog import users as user_events
from hub import errors
from hub.auth import login_cookies

queries = sql.Queries(__package__ or "hub.auth", "auth.sql")

MAX_PASSWORD_LENGTH = 1024  # argon2 takes any length; a megabyte "password" is an attack
_hasher = argon2.PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Checked when the name is no user's, so that a wrong name takes as long as a wrong
    password; made at first use (argon2 takes half a second), not when the module loads."""
    return _hasher.hash("chronohub: no such user")


class WeakPassword(errors.BadRequest):
    """The password does not meet the rules; the message says which."""


def check_rules(password: str, min_length: int) -> None:
    """Raise ``WeakPassword`` if ``password`` is too short, too long or has NUL characters."""
    if not isinstance(password, str) or len(password) < min_length:
        raise WeakPassword(f"the password must be at least {min_length} characters long")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"the password must be at most {MAX_PASSWORD_LENGTH} characters long")
    if "\x00" in password:
        raise WeakPassword("the password cannot contain a NUL character")


async def hash_password(password: str) -> str:
    """The argon2 hash of ``password`` (computed off the event loop)."""
    return await asyncio.to_thread(_hasher.hash, password)


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False


def _verify_for_no_user(password: str) -> None:
    _verify(_dummy_hash(), password)


async def verify(conn: sql.Connection, user_id: UUID | None, password: str) -> bool | None:
    """Whether ``password`` is the user's; None when the user has no password at all."""
    stored = await conn.fetchval(queries["credential_get"], user_id) if user_id else None
    if stored is None:
        await asyncio.to_thread(_verify_for_no_user, password)
        return None
    if not await asyncio.to_thread(_verify, stored, password):
        return False
    if _hasher.check_needs_rehash(stored):  # the parameters were raised since it was set
        await conn.execute(
            queries["credential_set"], user_id, await hash_password(password), datetime.now(UTC)
        )
    return True


async def set_password(
    session: store.Session,
    user: Any,
    password_hash: str,
    *,
    by: Literal["admin", "self", "signup", "cli"],
    metadata: models.Metadata,
    keep_session: str | None = None,
) -> None:
    """Store ``user``'s (a row with ``user_id`` and ``name``) new hash and say so in the log.

    Every browser session of the user ends but ``keep_session`` (the one that changed it):
    whoever knew the old password is signed out.
    """
    await session.conn.execute(
        queries["credential_set"], user["user_id"], password_hash, datetime.now(UTC)
    )
    await session.append(
        user_events.stream_id(user["user_id"]),
        [auth_events.UserPasswordSet(user_id=user["user_id"], name=user["name"], by=by)],
        metadata=metadata,
    )
    await login_cookies.end_others(session, user, keep=keep_session, metadata=metadata)
