"""Events of logging in and of the hub as an OAuth2 provider.

None of them carries a secret: no password, session cookie, authorization code or token.
Login events go to the user's stream (``user-<user_id>``); failed logins for names that are
no user go to ``login-unknown`` without the name typed (people type passwords into the
username field); signups to ``signup-<name>``; OAuth clients to ``oauth_client-<client_id>``
and authorization codes to ``oauth_code-<code_id>`` (``code_id`` is a public id, not the code).
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID

from pydantic import Field

from events import models
from events.catalog.names import Name

Authenticator = Literal["native", "oauth", "dummy", "jupyterhub"]
UNKNOWN_LOGIN_STREAM = "login-unknown"


class UserLoggedIn(models.Event):
    """A user logged in and got a browser session."""

    type: ClassVar[str] = "user.logged_in"

    user_id: UUID
    name: Name
    session_id: str = Field(min_length=1, max_length=64)
    authenticator: Authenticator
    expires_at: datetime


class UserLoggedOut(models.Event):
    """A browser session ended: the user logged out, or their password changed."""

    type: ClassVar[str] = "user.logged_out"

    user_id: UUID
    name: Name
    session_id: str = Field(min_length=1, max_length=64)
    reason: Literal["logout", "password_changed"] = "logout"


class UserLoginFailed(models.Event):
    """A login was refused. ``user_id``/``name`` only when the name is a user's."""

    type: ClassVar[str] = "user.login_failed"

    user_id: UUID | None = None
    name: Name | None = None
    authenticator: Authenticator
    # Attempts refused by a lockout or rate limit are not events (they would let anyone
    # flood the log); the failures that caused the lockout are.
    reason: Literal["bad_password", "no_password", "unknown_user", "not_allowed"]


class UserPasswordSet(models.Event):
    """A user's password was set or changed (the argon2 hash is kept outside the log)."""

    type: ClassVar[str] = "user.password_set"

    user_id: UUID
    name: Name
    by: Literal["admin", "self", "signup", "cli"]


class SignupRequested(models.Event):
    """Someone asked for an account; an admin approves or rejects it."""

    type: ClassVar[str] = "signup.requested"

    request_id: UUID
    name: Name


class SignupApproved(models.Event):
    """An admin approved a signup; the user is created by a ``user.created`` beside it."""

    type: ClassVar[str] = "signup.approved"

    request_id: UUID
    name: Name
    user_id: UUID


class SignupRejected(models.Event):
    """An admin rejected a signup."""

    type: ClassVar[str] = "signup.rejected"

    request_id: UUID
    name: Name


class OAuthClientRegistered(models.Event):
    """An OAuth client was registered or changed (its secret is an API token, by id)."""

    type: ClassVar[str] = "oauth_client.registered"

    client_id: str = Field(min_length=1, max_length=255, pattern=r"^\S+$")
    kind: Literal["service", "server"]
    owner: str = Field(min_length=1, max_length=255)
    server_name: str = Field(default="", max_length=255)
    redirect_uri: str = Field(min_length=1, max_length=2000)
    token_id: str | None = Field(default=None, max_length=64)
    description: str = Field(default="", max_length=1000)
    no_confirm: bool = False
    allowed_scopes: list[str] = Field(default_factory=list, max_length=200)


class OAuthClientRemoved(models.Event):
    """An OAuth client was removed."""

    type: ClassVar[str] = "oauth_client.removed"

    client_id: str = Field(min_length=1, max_length=255)


class OAuthCodeIssued(models.Event):
    """An authorization code was issued to a client for a user (the code is kept hashed)."""

    type: ClassVar[str] = "oauth.code_issued"

    code_id: str = Field(min_length=1, max_length=64)
    client_id: str = Field(min_length=1, max_length=255)
    user_id: UUID
    scopes: list[str]
    expires_at: datetime


class OAuthCodeExchanged(models.Event):
    """A code was exchanged for an access token (``token.issued`` is appended beside it)."""

    type: ClassVar[str] = "oauth.code_exchanged"

    code_id: str = Field(min_length=1, max_length=64)
    client_id: str = Field(min_length=1, max_length=255)
    user_id: UUID
    token_id: str = Field(min_length=1, max_length=64)
    scopes: list[str]


def signup_stream(name: str) -> str:
    """The stream of one name's signup requests."""
    return f"signup-{name}"


def client_stream(client_id: str) -> str:
    """The stream of one OAuth client."""
    return f"oauth_client-{client_id}"


def code_stream(code_id: str) -> str:
    """The stream of one authorization code."""
    return f"oauth_code-{code_id}"
