"""``chronohub password NAME``: set a user's password from the terminal (asked twice, never
echoed) or from standard input (one line), creating the user if there is none yet: an admin
if ``admin_users`` names them or if the hub has no admin at all yet. How the first admin of
a new hub gets to log in."""

from __future__ import annotations

import getpass
import sys
from typing import TextIO
from uuid import uuid4

from events import models, sql, store
from events.catalog import users as user_events
from hub import errors
from hub import settings as hub_settings
from hub.auth import signups
from hub.reads import users as users_read

queries = sql.Queries(__package__ or "hub.cli", "password.sql")
CLI = models.Metadata(actor=models.Actor(kind="system", name="chronohub-cli"))


def read_password(stdin: TextIO = sys.stdin) -> str:
    """The new password: asked twice on a terminal, else the first line of ``stdin``."""
    if stdin.isatty():
        first = getpass.getpass("New password: ")
        if getpass.getpass("Again: ") != first:
            raise errors.BadRequest("the two passwords differ")
        return first
    return stdin.readline().rstrip("\r\n")


async def set_password(
    event_store: store.EventStore, config: hub_settings.Settings, name: str, password: str
) -> tuple[bool, bool]:
    """Set ``name``'s password, creating the user first if needed; whether the user was
    created, and whether as the hub's first admin (``admin_users`` naming nobody yet)."""
    name = signups.valid_name(name.lower())
    created = first_admin = False
    async with event_store.session() as session:
        if not await users_read.exists(session.conn, name):
            user_id = uuid4()
            first_admin = not await session.conn.fetchval(queries["any_admin"])
            admin = first_admin or name in {n.lower() for n in config.admin_users}
            await session.append(
                user_events.stream_id(user_id),
                [user_events.UserCreated(user_id=user_id, name=name, admin=admin)],
                expected=store.NO_STREAM,
                metadata=CLI,
            )
            created = True
    await signups.set_password(
        event_store,
        name,
        password,
        min_length=config.min_password_length,
        by="cli",
        metadata=CLI,
    )
    return created, first_admin
