"""Accounts with passwords: signup requests and their approval, and setting passwords.

A signup request keeps the chosen password's argon2 hash in ``signup_credentials`` (outside
the log) until an admin approves it (the user is created and the hash becomes their
password) or rejects it (the hash is deleted).
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from pydantic import TypeAdapter, ValidationError

from events import models, sql, store
from events.catalog import auth as auth_events
from events.catalog import names
from events.catalog import users as user_events
from hub import errors
from hub.auth import credentials
from hub.reads import users as users_read

queries = sql.Queries(__package__ or "hub.auth", "auth.sql")
_NAME = TypeAdapter(names.Name)


def valid_name(name: str) -> str:
    """``name`` if it can be a user's name; 400 naming the problem otherwise."""
    try:
        return _NAME.validate_python(name)
    except ValidationError as exc:
        raise errors.BadRequest(
            f"invalid username {name!r}: 1 to 255 characters, no '/', whitespace, '!' or '='"
        ) from exc


async def request(
    event_store: store.EventStore,
    name: str,
    password: str,
    *,
    min_length: int,
    metadata: models.Metadata,
) -> None:
    """Record a signup request for ``name`` (409 if the name is taken or already asked for)."""
    name = valid_name(name)
    credentials.check_rules(password, min_length)
    password_hash = await credentials.hash_password(password)
    async with event_store.session() as session:
        conn = session.conn
        if await users_read.exists(conn, name):
            raise errors.Conflict(f"the username {name} is taken")
        if await conn.fetchrow(queries["signup_pending"], name) is not None:
            raise errors.Conflict(f"an account for {name} was already asked for")
        await conn.execute(queries["signup_credential_set"], name, password_hash)
        await session.append(
            auth_events.signup_stream(name),
            [auth_events.SignupRequested(request_id=uuid4(), name=name)],
            metadata=metadata,
        )


async def approve(event_store: store.EventStore, name: str, *, metadata: models.Metadata) -> Any:
    """Create the user a pending request asked for, with the password chosen then."""
    async with event_store.session() as session:
        conn = session.conn
        pending = await conn.fetchrow(queries["signup_pending"], name)
        if pending is None:
            raise errors.NotFound(f"No signup request for {name}")
        if await users_read.exists(conn, name):
            raise errors.Conflict(f"the username {name} was taken since it was asked for")
        password_hash = await conn.fetchval(queries["signup_credential_take"], name)
        user_id = uuid4()
        await session.append(
            user_events.stream_id(user_id),
            [user_events.UserCreated(user_id=user_id, name=name)],
            expected=store.NO_STREAM,
            metadata=metadata,
        )
        await session.append(
            auth_events.signup_stream(name),
            [
                auth_events.SignupApproved(
                    request_id=pending["request_id"], name=name, user_id=user_id
                )
            ],
            metadata=metadata,
        )
        if password_hash is not None:
            await credentials.set_password(
                session,
                {"user_id": user_id, "name": name},
                password_hash,
                by="signup",
                metadata=metadata,
            )
        return await users_read.require(conn, name)


async def reject(event_store: store.EventStore, name: str, *, metadata: models.Metadata) -> None:
    """Drop a pending request and the password hash kept for it."""
    async with event_store.session() as session:
        pending = await session.conn.fetchrow(queries["signup_pending"], name)
        if pending is None:
            raise errors.NotFound(f"No signup request for {name}")
        await session.conn.execute(queries["signup_credential_take"], name)
        await session.append(
            auth_events.signup_stream(name),
            [auth_events.SignupRejected(request_id=pending["request_id"], name=name)],
            metadata=metadata,
        )


async def set_password(
    event_store: store.EventStore,
    name: str,
    password: str,
    *,
    min_length: int,
    by: Any,
    metadata: models.Metadata,
) -> None:
    """Set the password of user ``name`` (by an admin or the command line)."""
    credentials.check_rules(password, min_length)
    password_hash = await credentials.hash_password(password)
    async with event_store.session() as session:
        row = await users_read.require(session.conn, name)
        await credentials.set_password(session, row, password_hash, by=by, metadata=metadata)


async def change_own_password(
    event_store: store.EventStore,
    user: Any,
    *,
    current: str,
    new: str,
    min_length: int,
    metadata: models.Metadata,
) -> None:
    """A user changes their own password; the current one must be given and right."""
    credentials.check_rules(new, min_length)
    async with event_store.pool.acquire() as conn:
        matched = await credentials.verify(conn, user["user_id"], current)
    if not matched:
        raise errors.Forbidden("the current password is wrong")
    password_hash = await credentials.hash_password(new)
    async with event_store.session() as session:
        await credentials.set_password(
            session,
            user,
            password_hash,
            by="self",
            metadata=metadata,
            keep_session=user.get("session_id"),
        )
