"""The interface every authenticator implements, and what it answers.

An authenticator either checks a username and password from the login form
(``password_form`` true: native, dummy), or sends the browser to an upstream provider and
reads the identity from its callback (``password_form`` false: oauth). Either way it returns
an ``Identity`` or raises ``LoginFailed``; lockouts, rate limits, events and the session
are the login pages' business, the same for all of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable
from uuid import UUID

from aiohttp import web

from events import models, sql, store
from events.catalog import auth as auth_events

GENERIC_FAILURE = "Invalid username or password"

Reason = Literal["bad_password", "no_password", "unknown_user", "not_allowed"]


@dataclass(frozen=True)
class Identity:
    """Who logged in. ``create``: make the user if there is none by that name yet;
    ``admin``: true makes them an admin, false (a JupyterHub class's explicit answer) no
    longer one (None: leave as is); ``after_login``: run with the
    login's session, the user's id and name and the events' metadata, in the login's
    transaction (a JupyterHub authenticator's auth_state and managed groups)."""

    name: str
    create: bool = False
    admin: bool | None = None
    after_login: Callable[[store.Session, UUID, str, models.Metadata], Awaitable[None]] | None = (
        None
    )


class LoginFailed(Exception):
    """The credentials were refused; ``message`` is shown, ``reason`` goes to the log."""

    def __init__(self, reason: Reason, message: str = GENERIC_FAILURE, status: int = 403) -> None:
        self.reason: Reason = reason
        self.message = message
        self.status = status
        super().__init__(message)


class Authenticator(Protocol):
    """What the login pages need of an authenticator."""

    @property
    def kind(self) -> auth_events.Authenticator:
        """Its name in events and settings."""
        ...

    @property
    def password_form(self) -> bool:
        """Whether the login page asks for a username and password."""
        ...

    @property
    def login_service(self) -> str:
        """The provider's name on the login button (redirecting authenticators)."""
        ...

    async def authenticate(self, conn: sql.Connection, username: str, password: str) -> Identity:
        """Check a username and password (``password_form`` authenticators)."""
        ...

    async def redirect(self, request: web.Request, next_url: str) -> web.StreamResponse:
        """Send the browser to the upstream provider (redirecting authenticators)."""
        ...

    async def callback(self, request: web.Request) -> tuple[Identity, str]:
        """The identity the provider's callback vouches for, and where to go next."""
        ...


@runtime_checkable
class SessionChecking(Protocol):
    """An authenticator that keeps checking a signed-in user after the login (JupyterHub's
    classes: ``blocked_users``, ``refresh_user``)."""

    async def session_valid(self, user_id: UUID, name: str) -> bool:
        """Whether a browser session of the user still counts (False: log in again)."""
        ...

    async def spawn_refusal(self, user_id: UUID, name: str, *, own_session: bool) -> str | None:
        """Why a server of the user may not start now, or None (``own_session``: the user's
        own browser asks, and can be sent to log in again)."""
        ...

    async def blocked(self, name: str) -> bool:
        """Whether the user is blocked now (their sessions and tokens no longer count)."""
        ...
