"""Native accounts: users with argon2 passwords in the ``credentials`` table.

Users are created by admins (REST API, configuration) or by an approved signup; an admin or
the ``chronohub password`` command sets a password, and users change their own.
"""

from __future__ import annotations

from aiohttp import web

from events import sql
from events.catalog import auth as auth_events
from hub.auth import credentials
from hub.auth.authenticators.base import Identity, LoginFailed
from hub.reads import users as users_read

queries = sql.Queries("hub.auth", "auth.sql")


class NativeAuthenticator:
    """Username and password, checked against the user's argon2 hash."""

    kind: auth_events.Authenticator = "native"
    password_form = True
    login_service = "chronohub"

    async def authenticate(self, conn: sql.Connection, username: str, password: str) -> Identity:
        """The user, if ``password`` is theirs; the same answer for every kind of failure."""
        row = await users_read.find(conn, username)
        matched = await credentials.verify(conn, row["user_id"] if row else None, password)
        if row is None:
            raise LoginFailed("unknown_user")
        if matched is None:
            raise LoginFailed("no_password")
        if not matched:
            raise LoginFailed("bad_password")
        return Identity(row["name"])

    async def redirect(self, request: web.Request, next_url: str) -> web.StreamResponse:
        """Native login has no upstream provider."""
        raise web.HTTPNotFound

    async def callback(self, request: web.Request) -> tuple[Identity, str]:
        """Native login has no upstream provider."""
        raise web.HTTPNotFound
