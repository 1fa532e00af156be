"""Browser sessions: a signed, HttpOnly, SameSite login cookie, and XSRF protection.

The login cookie (``jupyterhub-hub-login``, JupyterHub's name) holds a random session
secret, signed with the hub's cookie secret (itsdangerous), so a tampered cookie is refused
before the database is asked. Only the secret's SHA-256 is stored (``login_sessions``),
beside the ``user.logged_in`` event, so logging out ends the session for good.

XSRF: every cookie-authenticated request that changes something must carry the token of the
``_xsrf`` cookie back, as the ``_xsrf`` form field, the ``X-XSRFToken`` header or the
``_xsrf`` query argument (tornado's double-submit scheme, as JupyterHub uses). The cookie is
signed too, so a value planted by a sibling domain is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import itsdangerous
from aiohttp import web

from events import models, sql, store
from events.catalog import auth as auth_events
from hub import errors
from hub import settings as hub_settings

log = logging.getLogger(__name__)
queries = sql.Queries(__package__ or "hub.auth", "auth.sql")

COOKIE_NAME = "jupyterhub-hub-login"
XSRF_COOKIE = "_xsrf"
XSRF_FIELD = "_xsrf"
XSRF_HEADER = "X-XSRFToken"
COOKIE_PATH = "/hub/"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SECRET_FILE = "cookie_secret"  # noqa: S105 - the file's name, not a secret

XSRF_MISSING = "'_xsrf' argument missing from POST"
XSRF_MISMATCH = "XSRF cookie does not match POST argument"


def load_secret(config: hub_settings.Settings) -> bytes:
    """The cookie secret: configured, or read from (first made in) ``<data_dir>/cookie_secret``.

    Never logged. The file is created with mode 0600.
    """
    if config.cookie_secret is not None:
        value = config.cookie_secret.get_secret_value().encode()
        if len(value) < 32:
            raise ValueError("cookie_secret must be at least 32 characters long")
        return value
    path = Path(config.data_dir) / SECRET_FILE
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the data directory
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
        log.info("generated a new cookie secret in %s", path)
    return path.read_text().strip().encode()


@dataclass(frozen=True)
class Cookies:
    """Signs and reads the hub's cookies."""

    secret: bytes
    max_age_s: int
    secure: bool = False

    def _signer(self, purpose: str) -> itsdangerous.URLSafeTimedSerializer:
        return itsdangerous.URLSafeTimedSerializer(self.secret, salt=f"chronohub-{purpose}")

    def sign(self, purpose: str, value: str) -> str:
        """``value`` signed (and timestamped) for ``purpose``."""
        return self._signer(purpose).dumps(value)

    def unsign(self, purpose: str, signed: str, max_age_s: int | None = None) -> str | None:
        """The value of a signed cookie; None if tampered with, malformed or too old."""
        try:
            value = self._signer(purpose).loads(signed, max_age=max_age_s or self.max_age_s)
        except itsdangerous.BadData:
            return None
        return value if isinstance(value, str) else None

    def set(self, response: web.StreamResponse, name: str, value: str, *, httponly: bool) -> None:
        """Set a cookie the hub's way: path /hub/, SameSite=Lax, Secure behind https."""
        response.set_cookie(
            name,
            value,
            path=COOKIE_PATH,
            httponly=httponly,
            samesite="Lax",
            secure=self.secure,
            max_age=self.max_age_s,
        )

    def clear(self, response: web.StreamResponse, name: str) -> None:
        """Remove a cookie."""
        response.del_cookie(name, path=COOKIE_PATH)


def digest(secret: str) -> bytes:
    """What is stored and looked up for a session secret."""
    return hashlib.sha256(secret.encode()).digest()


@dataclass(frozen=True)
class Started:
    """A session just started: the cookie value to set, and its public id."""

    cookie: str
    session_id: str
    expires_at: datetime


async def start(
    session: store.Session,
    cookies: Cookies,
    user: Any,
    *,
    authenticator: auth_events.Authenticator,
    metadata: models.Metadata,
) -> Started:
    """Start a browser session for ``user`` (a row with ``user_id``, ``name``): event + row."""
    secret = secrets.token_urlsafe(32)
    session_id = "s" + secrets.token_hex(8)
    now = datetime.now(UTC)
    expires_at = now + timedelta(seconds=cookies.max_age_s)
    await session.conn.execute(queries["sessions_purge"])
    await session.conn.execute(
        queries["session_create"], session_id, digest(secret), user["user_id"], now, expires_at
    )
    await session.append(
        "user-" + str(user["user_id"]),
        [
            auth_events.UserLoggedIn(
                user_id=user["user_id"],
                name=user["name"],
                session_id=session_id,
                authenticator=authenticator,
                expires_at=expires_at,
            )
        ],
        metadata=metadata,
    )
    return Started(cookies.sign("login", secret), session_id, expires_at)


async def user_of(conn: sql.Connection, cookies: Cookies, cookie: str | None) -> Any:
    """The user row (``session_id``, ``user_id``, ``name``, ``admin``, ``groups``) of a login
    cookie; None if the cookie is missing, tampered with, expired or ended."""
    if not cookie:
        return None
    secret = cookies.unsign("login", cookie)
    if secret is None:
        return None
    return await conn.fetchrow(queries["session_user"], digest(secret))


async def end(session: store.Session, user: Any, *, metadata: models.Metadata) -> None:
    """End the browser session of ``user`` (a ``user_of`` row): the row goes, an event says so."""
    gone = await session.conn.fetchval(queries["session_delete"], user["session_id"])
    if gone is None:
        return
    await session.append(
        "user-" + str(user["user_id"]),
        [
            auth_events.UserLoggedOut(
                user_id=user["user_id"], name=user["name"], session_id=user["session_id"]
            )
        ],
        metadata=metadata,
    )


async def end_others(
    session: store.Session, user: Any, *, keep: str | None, metadata: models.Metadata
) -> int:
    """End every browser session of ``user`` but ``keep`` (after a password change)."""
    ended = await session.conn.fetch(queries["sessions_end_others"], user["user_id"], keep)
    if ended:
        await session.append(
            "user-" + str(user["user_id"]),
            [
                auth_events.UserLoggedOut(
                    user_id=user["user_id"],
                    name=user["name"],
                    session_id=row["session_id"],
                    reason="password_changed",
                )
                for row in ended
            ],
            metadata=metadata,
        )
    return len(ended)


# --- XSRF ------------------------------------------------------------------------------------


def xsrf_token(request: web.Request, cookies: Cookies) -> tuple[str, str | None]:
    """The request's XSRF token, and a signed cookie value to set when it had none."""
    signed = request.cookies.get(XSRF_COOKIE)
    token = cookies.unsign("xsrf", signed) if signed else None
    if token:
        return token, None
    token = secrets.token_urlsafe(24)
    return token, cookies.sign("xsrf", token)


def set_xsrf_cookie(response: web.StreamResponse, cookies: Cookies, signed: str | None) -> None:
    """Set the ``_xsrf`` cookie made by ``xsrf_token`` (if it made one)."""
    if signed is not None:
        cookies.set(response, XSRF_COOKIE, signed, httponly=True)


async def check_xsrf(request: web.Request, cookies: Cookies) -> None:
    """403 unless the request carries back the token of its ``_xsrf`` cookie."""
    sent = request.headers.get(XSRF_HEADER) or request.query.get(XSRF_FIELD)
    if sent is None and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        form = await request.post()
        value = form.get(XSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent:
        raise errors.Forbidden(XSRF_MISSING)
    signed = request.cookies.get(XSRF_COOKIE)
    expected = cookies.unsign("xsrf", signed) if signed else None
    if expected is None or not hmac.compare_digest(expected.encode(), sent.encode()):
        raise errors.Forbidden(XSRF_MISMATCH)
