"""JupyterHub's authenticators, unchanged, behind chronohub's ``Authenticator`` interface.

Two kinds are run:

- password authenticators (``PAMAuthenticator``, ``LDAPAuthenticator``…, whose
  ``login_url`` is the hub's own ``login``): chronohub's login form hands the username and
  password to ``get_authenticated_user``, JupyterHub's outer entry, which runs
  ``authenticate``, ``normalize_username``, ``check_blocked_users``, ``allow_all`` /
  ``check_allowed`` and ``is_admin`` itself;
- OAuthenticator classes: chronohub's own ``/hub/oauth_login`` and ``/hub/oauth_callback``
  do what the class's tornado handlers do (``OAuthLoginHandler.get``, ``OAuthCallbackHandler
  .get``), from the class's own settings (``authorize_url``, ``scope``,
  ``extra_authorize_params``, ``enable_pkce``…), and the callback calls
  ``get_authenticated_user`` with ``_CallbackHandler``, the little of a tornado handler
  ``authenticate`` reads. Running the tornado handlers themselves inside aiohttp would need
  most of tornado's ``RequestHandler`` and JupyterHub's ``BaseHandler``; the methods that
  do the work (token exchange, user info, allow checks, auth_state) are the class's own.

Authenticators with other login handlers of their own (``get_handlers`` beyond OAuth's) are
refused at startup with that reason. The result's ``admin`` true makes the user an admin;
``auth_state`` is kept encrypted (``auth_state.Keeper``) and never enters the event log.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

from aiohttp import web
from oauthlib.oauth2 import WebApplicationClient

from events import models, sql, store
from events.catalog import auth as auth_events
from hub import errors
from hub import settings as hub_settings
from hub.auth import login_cookies
from hub.auth.authenticators import jupyterhub_config, managed_groups
from hub.auth.authenticators.auth_state import Keeper
from hub.auth.authenticators.base import Identity, LoginFailed
from hub.reads import users as users_read

log = logging.getLogger(__name__)

STATE_COOKIE = "chronohub-oauth-state"  # cleared by hub/pages/login.py after a callback
STATE_MAX_AGE_S = 600
HUB_PREFIX = "/hub/"


class _Server:
    base_url = HUB_PREFIX


class _Hub:
    server = _Server()


class _Request:
    def __init__(self, request: web.Request, public_url: str | None) -> None:
        origin = urlsplit(public_url) if public_url else None
        self.protocol = origin.scheme if origin else request.scheme
        self.host = origin.netloc if origin else request.host
        self.uri = request.path_qs
        self.path = request.path
        self.headers = request.headers
        self.remote_ip = request.remote


class _CallbackHandler:
    """What JupyterHub's authenticators read of the tornado handler they are given.

    Hand-written: the handler they expect is tornado's ``RequestHandler`` with JupyterHub's
    ``BaseHandler`` on top, neither of which can run over an aiohttp request. This offers
    the arguments, the request's origin, ``hub.server.base_url`` (for ``get_callback_url``)
    and the OAuth state cookie's value (``get_state_cookie``, for PKCE).
    """

    def __init__(
        self,
        request: web.Request,
        public_url: str | None,
        arguments: dict[str, str],
        state_cookie: str = "",
    ) -> None:
        self.request = _Request(request, public_url)
        self.hub = _Hub()
        self.log = log
        self._arguments = arguments
        self._state_cookie = state_cookie

    def get_argument(self, name: str, default: Any = None) -> Any:
        return self._arguments.get(name, default)

    def get_state_cookie(self) -> str:
        return self._state_cookie


def _serialize_state(state: dict[str, Any]) -> str:
    from oauthenticator.oauth2 import _serialize_state  # the class's own state format

    return str(_serialize_state(state))


def _deserialize_state(text: str) -> dict[str, Any]:
    from oauthenticator.oauth2 import _deserialize_state

    found = _deserialize_state(text)
    return found if isinstance(found, dict) else {}


def _is_oauthenticator(instance: Any) -> bool:
    try:
        from oauthenticator.oauth2 import OAuthenticator
    except ImportError:
        return False
    return isinstance(instance, OAuthenticator)


def _refused_message(exc: Exception) -> str:
    return str(getattr(exc, "log_message", None) or exc)


class LoginExpired(errors.Forbidden):
    """The authenticator's ``refresh_user`` asks for a new login before a spawn."""


class JupyterHubAuthenticator:
    """A JupyterHub ``Authenticator`` subclass, configured by traitlets, behind the login
    pages."""

    kind: auth_events.Authenticator = "jupyterhub"

    def __init__(
        self,
        config: hub_settings.Settings,
        *,
        cookies: login_cookies.Cookies,
    ) -> None:
        name = config.authenticator_class or ""
        cls = jupyterhub_config.resolve(name)
        traits = jupyterhub_config.load(
            cls, config.authenticator_config, config.authenticator_config_file
        )
        try:
            self.authenticator: Any = cls(config=traits)
        except Exception as exc:  # a trait's validator refusing a value, a missing library
            raise jupyterhub_config.AuthenticatorConfigError(
                f"authenticator_class {name!r} refused its configuration:"
                f" {type(exc).__name__}: {exc}"
            ) from exc
        if self.authenticator.allowed_users and self.authenticator.admin_users:
            # as JupyterHub.init_users does: admins are allowed in
            self.authenticator.allowed_users.update(self.authenticator.admin_users)
        self.cookies = cookies
        self._public_url = config.public_url
        self.oauth = _is_oauthenticator(self.authenticator)
        self.password_form = not self.oauth
        if not self.oauth and self.authenticator.login_url(HUB_PREFIX) != HUB_PREFIX + "login":
            raise jupyterhub_config.AuthenticatorConfigError(
                f"authenticator_class {name!r} logs in through handlers of its own"
                f" ({self.authenticator.login_url(HUB_PREFIX)}), which chronohub does not run;"
                " password and OAuthenticator classes are supported"
            )
        self.login_service = str(self.authenticator.login_service or cls.__name__)
        self.keeper: Keeper | None = None
        if self.authenticator.enable_auth_state:
            secret = config.crypt_key.get_secret_value() if config.crypt_key else None
            self.keeper = Keeper.from_settings(secret)

    def identity(self, result: dict[str, Any]) -> Identity:
        """The chronohub identity of ``get_authenticated_user``'s answer, with the step that
        keeps its auth_state (encrypted) once the user exists."""
        state = result.get("auth_state")
        keeper = self.keeper
        groups = result.get("groups") if self.authenticator.manage_groups else None

        async def keep(
            session: store.Session, user_id: uuid.UUID, name: str, metadata: models.Metadata
        ) -> None:
            if keeper is not None:
                await keeper.save(session.conn, user_id, state)
            if groups is not None:
                await managed_groups.sync(
                    session, user_id, name, [str(g) for g in groups], metadata
                )

        return Identity(
            str(result["name"]),
            create=True,
            admin=True if result.get("admin") else None,
            after_login=keep,
        )

    async def authenticate(self, conn: sql.Connection, username: str, password: str) -> Identity:
        """The class's ``get_authenticated_user`` with the form's username and password."""
        if self.oauth:
            raise LoginFailed("not_allowed", f"Log in with {self.login_service} instead")
        handler = _PasswordHandler()
        try:
            result = await self.authenticator.get_authenticated_user(
                handler, {"username": username, "password": password}
            )
        except Exception as exc:  # tornado's HTTPError from check_allowed, or the class's own
            log.warning("%s refused %r: %s", self.login_service, username, exc)
            raise LoginFailed("not_allowed") from exc
        if not result:
            known = await users_read.find(conn, username)
            raise LoginFailed("bad_password" if known else "unknown_user")
        return self.identity(result)

    async def redirect(self, request: web.Request, next_url: str) -> web.StreamResponse:
        """What ``OAuthLoginHandler.get`` does: the state (and PKCE verifier) in a signed
        cookie, then 302 to the class's ``authorize_url``."""
        if not self.oauth:
            raise web.HTTPNotFound
        a = self.authenticator
        handler = _CallbackHandler(request, self._public_url, {})
        redirect_uri = a.get_callback_url(handler)
        state_id = uuid.uuid4().hex
        state: dict[str, Any] = {"state_id": state_id, "next_url": next_url}
        params: dict[str, str] = dict(a.extra_authorize_params)
        if a.enable_pkce:  # RFC 7636 S256, as the class's handler makes it (oauthlib here)
            client = WebApplicationClient(a.client_id)
            verifier = client.create_code_verifier(64)
            state["code_verifier"] = verifier
            params["code_challenge"] = client.create_code_challenge(verifier, "S256")
            params["code_challenge_method"] = "S256"
        params["state"] = _serialize_state({"state_id": state_id})
        query = {"response_type": "code", "redirect_uri": redirect_uri, "client_id": a.client_id}
        if a.scope:  # tornado sends an empty scope; some providers refuse that
            query["scope"] = " ".join(a.scope)
        query.update(params)
        parts = urlsplit(a.authorize_url)
        joined = "&".join(p for p in (parts.query, urlencode(query)) if p)
        response = web.Response(
            status=302, headers={"Location": urlunsplit(parts._replace(query=joined))}
        )
        self.cookies.set(
            response,
            STATE_COOKIE,
            self.cookies.sign("oauth-state", _serialize_state(state)),
            httponly=True,
        )
        return response

    async def callback(self, request: web.Request) -> tuple[Identity, str]:
        """What ``OAuthCallbackHandler.get`` does: check error, code and state, then the
        class's ``get_authenticated_user`` (token exchange, user info, allow checks)."""
        if not self.oauth:
            raise web.HTTPNotFound
        signed = request.cookies.get(STATE_COOKIE)
        saved = (
            self.cookies.unsign("oauth-state", signed, max_age_s=STATE_MAX_AGE_S)
            if signed
            else None
        )
        if saved is None:
            raise LoginFailed("not_allowed", "OAuth state cookie missing or expired: log in again")
        if "error" in request.query:
            said = request.query.get("error_description") or request.query["error"]
            raise LoginFailed("not_allowed", f"{self.login_service} refused: {said}")
        if not request.query.get("code"):
            raise LoginFailed("not_allowed", "The provider's callback carries no code")
        expected = _deserialize_state(saved)
        url_state = _deserialize_state(request.query.get("state", ""))
        if not secrets.compare_digest(
            str(url_state.get("state_id", "")).encode(), str(expected.get("state_id")).encode()
        ):
            raise LoginFailed("not_allowed", "OAuth state does not match: log in again")
        handler = _CallbackHandler(request, self._public_url, dict(request.query), saved)
        try:
            result = await self.authenticator.get_authenticated_user(handler, None)
        except Exception as exc:  # the class's HTTPError (403, 500), an HTTP client error
            message = _refused_message(exc)
            log.warning("%s refused a login: %s", self.login_service, message)
            raise LoginFailed("not_allowed", f"{self.login_service} refused: {message}") from exc
        if not result:
            raise LoginFailed(
                "not_allowed",
                str(self.authenticator.custom_403_message or "Not allowed to log in"),
            )
        next_url = str(expected.get("next_url") or urljoin(HUB_PREFIX, "home"))
        return self.identity(result), next_url

    async def auth_state(self, conn: sql.Connection, user_id: uuid.UUID) -> Any:
        """The user's decrypted auth_state (None without one, or without auth_state)."""
        return None if self.keeper is None else await self.keeper.load(conn, user_id)

    async def refresh_user(self, conn: sql.Connection, row: Any) -> bool:
        """The class's ``refresh_user`` for the user ``row``: True when still valid
        (auth_state replaced if it returned a new one), False when it asks for a new login."""
        user = AdaptedUser(row["name"], await self.auth_state(conn, row["user_id"]))
        refreshed = await self.authenticator.refresh_user(user, None)
        if refreshed is False:
            return False
        if isinstance(refreshed, dict) and self.keeper is not None and "auth_state" in refreshed:
            await self.keeper.save(conn, row["user_id"], refreshed["auth_state"])
        return True

    async def pre_spawn_start(self, conn: sql.Connection, row: Any, spawner: Any) -> None:
        """For the spawner adapter: as JupyterHub does before a spawn, ``refresh_user`` first
        when the class sets ``refresh_pre_spawn`` (a refusal: ``LoginExpired``), then the
        class's ``pre_spawn_start(user, spawner)``, the user's auth_state given as JupyterHub
        gives it (``await user.get_auth_state()``)."""
        if self.authenticator.refresh_pre_spawn and not await self.refresh_user(conn, row):
            raise LoginExpired(
                f"{self.login_service} no longer vouches for {row['name']}: log in again"
                " before starting a server"
            )
        user = AdaptedUser(row["name"], await self.auth_state(conn, row["user_id"]))
        await _maybe_await(self.authenticator.pre_spawn_start(user, spawner))


async def pre_spawn_start(
    authenticator: object, conn: sql.Connection, row: Any, spawner: Any
) -> None:
    """The spawner adapter's entry: before starting ``spawner`` for the user ``row``
    (``user_id``, ``name``), run the authenticator's ``pre_spawn_start`` if it is one of
    JupyterHub's classes (it may put auth_state into ``spawner.environment``); chronohub's
    own authenticators have none."""
    if isinstance(authenticator, JupyterHubAuthenticator):
        await authenticator.pre_spawn_start(conn, row, spawner)


class _PasswordRequest:
    # the login form's address is not passed down (the login page logs it with the
    # user.login_failed event); PAM puts this in its failure warning
    remote_ip = "the login form"


class _PasswordHandler:
    """The handler password authenticators get: they read the form's data, and PAM reads
    ``request.remote_ip`` for its failure warning."""

    request = _PasswordRequest()
    log = log


class AdaptedUser:
    """The ``user`` JupyterHub's ``refresh_user`` and ``pre_spawn_start`` read: its name
    and ``await user.get_auth_state()``."""

    def __init__(self, name: str, state: Any) -> None:
        self.name = name
        self._state = state

    async def get_auth_state(self) -> Any:
        return self._state


async def _maybe_await(value: Any) -> Any:
    if hasattr(value, "__await__"):
        return await value
    return value
