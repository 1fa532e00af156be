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

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

from aiohttp import web
from oauthlib.oauth2 import WebApplicationClient

from events import models, sql, store
from events.catalog import auth as auth_events
from events.catalog import users as user_events
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


@dataclass
class _Flight:
    """One user's refresh lock, and how many requests hold or await it."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0
    refused_at: float | None = None
    """When the class last refused this user's refresh (monotonic), for the requests that
    waited for that answer."""


class JupyterHubAuthenticator:
    """A JupyterHub ``Authenticator`` subclass, configured by traitlets, behind the login
    pages."""

    kind: auth_events.Authenticator = "jupyterhub"

    def __init__(
        self,
        config: hub_settings.Settings,
        *,
        cookies: login_cookies.Cookies,
        event_store: store.EventStore | None = None,
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
        self.store = event_store
        # When each user's auth was last vouched for in this process (a login or a refresh):
        # JupyterHub's in-memory ``User._auth_refreshed``. Another process, or this one after
        # a restart, refreshes at the user's first request, as JupyterHub does after one.
        self.refreshed: dict[str, float] = {}
        # The refresh under way for each user (see ``_one_refresh``): N parallel requests of
        # one user ask the class once, and record its answer's events once.
        self.refreshing: dict[str, _Flight] = {}
        base = jupyterhub_config.base()
        self.overrides_refresh = type(self.authenticator).refresh_user is not base.refresh_user
        self.overrides_blocked = (
            type(self.authenticator).check_blocked_users is not base.check_blocked_users
        )
        a = self.authenticator
        if a.allow_existing_users and not a.allow_all and event_store is not None:
            # JupyterHub 5's allow_existing_users: its add_user puts every user of the hub's
            # database into allowed_users (at start and as users are added). chronohub's users
            # are added by any hub process at any time, so the database is asked at login.
            a.check_allowed = _existing_users_allowed(a.check_allowed, event_store)
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

        refreshed = self.refreshed

        async def keep_and_note(
            session: store.Session, user_id: uuid.UUID, name: str, metadata: models.Metadata
        ) -> None:
            await keep(session, user_id, name, metadata)
            refreshed[name] = time.monotonic()  # JupyterHub's login_user: _auth_refreshed

        admin = result.get("admin")
        return Identity(
            str(result["name"]),
            create=True,
            # as JupyterHub's auth_to_user: only an explicit value changes it, False too (a
            # user no longer in admin_groups is demoted at this login)
            admin=None if admin is None else bool(admin),
            after_login=keep_and_note,
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

    def _event_store(self) -> store.EventStore:
        if self.store is None:
            raise RuntimeError("the authenticator adapter was built without the event store")
        return self.store

    async def refresh(
        self, user_id: uuid.UUID, name: str, *, force: bool = False, strict: bool = False
    ) -> bool:
        """JupyterHub's ``BaseHandler.refresh_auth``: the class's ``refresh_user`` when the
        user's auth is older than ``auth_refresh_age`` (or ``force``, before a spawn). True: the
        user stays signed in (a dict's auth_state, admin and groups applied, with their
        events); False: a new login is needed. A refusal counts only when ``strict`` (the
        user's own browser session) or with ``auth_refresh_strict``: a token or another
        user's request cannot be sent to log in, and keeps the stale auth, as in JupyterHub.

        Cheap when there is nothing to do: a class that does not override ``refresh_user``
        (the base one answers True) is never called, and no database is read."""
        a = self.authenticator
        age = a.auth_refresh_age
        if not age or not self.overrides_refresh:
            return True
        asked = time.monotonic()
        last = self.refreshed.get(name)
        if not force and last is not None and asked - last < age:
            return True
        async with self._one_refresh(name) as flight:
            # Another request of theirs asked the class while this one waited: its answer
            # stands for this one too (the class is asked once, its events recorded once).
            last = self.refreshed.get(name)
            if last is not None and last >= asked:
                return True
            if flight.refused_at is None or flight.refused_at < asked:
                if await self._refresh(user_id, name):
                    return True
                flight.refused_at = time.monotonic()
            if strict or a.auth_refresh_strict:
                log.warning("%s has stale auth: a new login is needed", name)
                return False
            log.warning("%s has stale auth, which cannot be refreshed here: kept", name)
            return True

    @contextlib.asynccontextmanager
    async def _one_refresh(self, name: str) -> AsyncIterator[_Flight]:
        """Hold ``name``'s refresh lock; the lock is forgotten once nobody holds or awaits it.
        (A per-key lock of a few lines: asyncio has none, and no library is worth adding.)"""
        flight = self.refreshing.get(name)
        if flight is None:
            flight = self.refreshing[name] = _Flight()
        flight.users += 1
        try:
            async with flight.lock:
                yield flight
        finally:
            flight.users -= 1
            if flight.users == 0:
                del self.refreshing[name]

    async def _refresh(self, user_id: uuid.UUID, name: str) -> bool:
        """Ask the class's ``refresh_user`` and apply its answer; False: it refused."""
        event_store = self._event_store()
        async with event_store.pool.acquire() as conn:
            state = await self.auth_state(conn, user_id)
        answer = await _maybe_await(self.authenticator.refresh_user(AdaptedUser(name, state), None))
        if not answer:
            return False
        if isinstance(answer, dict):
            await self._apply_refresh(event_store, user_id, name, answer, state)
        # once answered and applied: the requests that waited for it read it as done
        self.refreshed[name] = time.monotonic()
        return True

    async def _apply_refresh(
        self,
        event_store: store.EventStore,
        user_id: uuid.UUID,
        name: str,
        answer: dict[str, Any],
        state: Any,
    ) -> None:
        """A ``refresh_user`` dict, as JupyterHub's ``auth_to_user`` applies it: an explicit
        ``admin``, the ``groups`` of a class that manages them, the new auth_state (the old
        one kept when the dict has none)."""
        metadata = models.Metadata(actor=REFRESH_ACTOR)
        async with event_store.session() as session:
            admin = answer.get("admin")
            if admin is not None:
                current = await users_read.find(session.conn, name)
                if current is not None and bool(current["admin"]) != bool(admin):
                    await session.append(
                        user_events.stream_id(user_id),
                        [user_events.UserAdminChanged(user_id=user_id, admin=bool(admin))],
                        metadata=metadata,
                    )
            groups = answer.get("groups")
            if self.authenticator.manage_groups and groups is not None:
                await managed_groups.sync(
                    session, user_id, name, [str(g) for g in groups], metadata
                )
            if self.keeper is not None and answer.get("auth_state", state) != state:
                await self.keeper.save(session.conn, user_id, answer.get("auth_state"))

    async def session_valid(self, user_id: uuid.UUID, name: str) -> bool:
        """A browser session's check at each request: not blocked since it began, and
        refreshed when its auth is older than ``auth_refresh_age``."""
        if await self.blocked(name):
            return False
        return await self.refresh(user_id, name, strict=True)

    async def spawn_refusal(
        self, user_id: uuid.UUID, name: str, *, own_session: bool
    ) -> str | None:
        """Before a spawn: not blocked, and with ``refresh_pre_spawn`` a forced refresh
        (JupyterHub's ``spawn_single_user``, and its message)."""
        if await self.blocked(name):
            return f"{name} is blocked from this hub (blocked_users)"
        if self.authenticator.refresh_pre_spawn and not await self.refresh(
            user_id, name, force=True, strict=own_session
        ):
            return f"auth has expired for {name}, login again"
        return None

    async def blocked(self, name: str) -> bool:
        """Whether the class's ``check_blocked_users`` refuses ``name`` now (a session started
        before the name was blocked ends; JupyterHub strips a blocked user's roles when it
        starts). A class that overrides it may read the login's result, which a later request
        does not have: its check runs at login only."""
        if self.overrides_blocked or not self.authenticator.blocked_users:
            return False
        passed = await _maybe_await(self.authenticator.check_blocked_users(name, None))
        return not passed

    async def pre_spawn_start(self, user_id: uuid.UUID, spawner: Any) -> None:
        """For the spawner adapter, what JupyterHub's ``User.spawn`` does before a start: the
        class's ``pre_spawn_start(user, spawner)`` (``await user.get_auth_state()`` gives the
        decrypted auth_state), then the spawner's ``auth_state_hook`` with that state."""
        async with self._event_store().pool.acquire() as conn:
            state = await self.auth_state(conn, user_id)
        user = AdaptedUser(spawner.user.name, state, spawner.user)
        await _maybe_await(self.authenticator.pre_spawn_start(user, spawner))
        await spawner.run_auth_state_hook(state)


REFRESH_ACTOR = models.Actor(kind="system", name="refresh_user")


def _existing_users_allowed(check_allowed: Any, event_store: store.EventStore) -> Any:
    """``check_allowed`` that first lets in a user the hub already has (JupyterHub 5's
    ``allow_existing_users``; blocked users were refused before this is asked)."""

    async def allowed(username: str, authentication: Any = None) -> bool:
        async with event_store.pool.acquire() as conn:
            if await users_read.find(conn, username) is not None:
                return True
        return bool(await _maybe_await(check_allowed(username, authentication)))

    return allowed


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
    and ``await user.get_auth_state()``; before a spawn, the rest (groups, admin, url…) is
    the spawner's own ``user``."""

    def __init__(self, name: str, state: Any, spawner_user: Any = None) -> None:
        self.name = name
        self._state = state
        self._spawner_user = spawner_user

    async def get_auth_state(self) -> Any:
        return self._state

    def __getattr__(self, attribute: str) -> Any:
        if self._spawner_user is None:
            raise AttributeError(attribute)
        return getattr(self._spawner_user, attribute)


async def _maybe_await(value: Any) -> Any:
    if hasattr(value, "__await__"):
        return await value
    return value
