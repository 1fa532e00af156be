"""The dummy authenticator, for development: any username, with any password or the one
``dummy_password``. The settings refuse it unless ``dummy_authenticator_enabled`` is set too."""

from __future__ import annotations

import hmac

from aiohttp import web

from events import sql
from events.catalog import auth as auth_events
from hub import settings as hub_settings
from hub.auth.authenticators.base import Identity, LoginFailed


class DummyAuthenticator:
    """Lets anyone in (with the shared password, if one is set); creates users on login."""

    kind: auth_events.Authenticator = "dummy"
    password_form = True
    login_service = "dummy"

    def __init__(self, config: hub_settings.Settings) -> None:
        if not config.dummy_authenticator_enabled:  # the settings refuse this already
            raise ValueError("the dummy authenticator needs dummy_authenticator_enabled = true")
        self._password = config.dummy_password

    async def authenticate(self, conn: sql.Connection, username: str, password: str) -> Identity:
        """Anyone, if the password is the shared one (or none is set)."""
        if self._password is not None and not hmac.compare_digest(
            self._password.get_secret_value().encode(), password.encode()
        ):
            raise LoginFailed("bad_password")
        return Identity(username, create=True)

    async def redirect(self, request: web.Request, next_url: str) -> web.StreamResponse:
        """The dummy login has no upstream provider."""
        raise web.HTTPNotFound

    async def callback(self, request: web.Request) -> tuple[Identity, str]:
        """The dummy login has no upstream provider."""
        raise web.HTTPNotFound
