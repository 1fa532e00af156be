"""``/hub/login``, ``/hub/logout`` and the other browser pages of logging in.

Everything works without JavaScript: plain forms, each with the ``_xsrf`` token. The login
form's POST is checked here (it is not cookie-authenticated yet); every other state-changing
request of a signed-in browser is checked by ``identity.middleware``.

A login attempt goes: lockout and rate limit (``login_throttle``) → the authenticator →
on failure a ``user.login_failed`` event and one more failure counted; on success the user
is created if the authenticator vouches for a new one (dummy, oauth), a session starts
(``user.logged_in``) and the browser goes to ``next``, if that is on this hub.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from events import models, sql
from events.catalog import auth as auth_events
from events.catalog import names
from events.catalog import users as user_events
from hub import errors
from hub.api import servers as servers_api
from hub.api import services as services_api
from hub.auth import access, identity, login_cookies, login_throttle, scope_table, signups
from hub.auth.authenticators.base import Identity, LoginFailed
from hub.context import HUB
from hub.pages import user as user_pages
from hub.reads import users as users_read
from hub.web import client_address, html

log = logging.getLogger(__name__)
LOGIN = models.Actor(kind="system", name="login")
_NAME = TypeAdapter(names.Name)


def _metadata(request: web.Request, actor: models.Actor = LOGIN) -> models.Metadata:
    return access.request_metadata(request, actor)


def _login_page(
    request: web.Request, *, status: int = 200, error: str | None = None, username: str = ""
) -> web.Response:
    auth = request.app[identity.AUTH]
    return identity.form_page(
        request,
        "login.html",
        status=status,
        error=error,
        next=html.safe_next(request, request.query.get("next")),
        username=username,
        password_form=auth.authenticator.password_form,
        login_service=auth.authenticator.login_service,
        allow_signup=auth.settings.allow_signup and auth.authenticator.kind == "native",
    )


async def login_form(request: web.Request) -> web.StreamResponse:
    """``GET /hub/login``: the form (or the provider's button); signed-in users go on."""
    if identity.session_user(request) is not None:
        raise web.HTTPFound(html.safe_next(request, request.query.get("next")))
    return _login_page(request)


async def login(request: web.Request) -> web.StreamResponse:
    """``POST /hub/login``: check the XSRF token, the limits, then the credentials."""
    auth = request.app[identity.AUTH]
    hub = request.app[HUB]
    try:
        await login_cookies.check_xsrf(request, auth.cookies)
    except errors.Forbidden as exc:
        return _login_page(request, status=403, error=exc.message)
    form = await request.post()
    username = str(form.get("username", "")).strip().lower()
    password = str(form.get("password", ""))
    if not auth.authenticator.password_form:
        return _login_page(
            request, status=400, error=f"Log in with {auth.authenticator.login_service}"
        )
    if not username or not password:
        return _login_page(
            request, status=400, error="Username and password are required", username=username
        )
    now = datetime.now(UTC)
    address = client_address.of(request)
    async with hub.store.pool.acquire() as conn:
        refusal = await login_throttle.refusal(conn, username, address, now, auth.limits)
        if refusal is not None:
            log.warning("login refused (%s) for %r from %s", refusal.reason, username, address)
            response = _login_page(request, status=429, error=refusal.message, username=username)
            response.headers["Retry-After"] = str(refusal.retry_after_s)
            return response
        try:
            found = await auth.authenticator.authenticate(conn, username, password)
        except LoginFailed as failure:
            locked = await login_throttle.record_failure(conn, username, address, now, auth.limits)
            await _failed(request, conn, username, failure.reason)
            message = failure.message
            if locked:
                message += (
                    f". Too many failed logins: the account is locked for"
                    f" {auth.settings.login_lockout_seconds} seconds"
                )
            return _login_page(request, status=failure.status, error=message, username=username)
        await login_throttle.record_success(conn, username)
    return await complete_login(request, found, html.safe_next(request, request.query.get("next")))


async def _failed(request: web.Request, conn: sql.Connection, username: str, reason: Any) -> None:
    """Append ``user.login_failed``: on the user's stream if the name is a user's."""
    hub = request.app[HUB]
    kind = request.app[identity.AUTH].authenticator.kind
    row = await users_read.find(conn, username)
    if row is None:
        event = auth_events.UserLoginFailed(
            authenticator=kind, reason="unknown_user" if username else reason
        )
        stream = auth_events.UNKNOWN_LOGIN_STREAM
    else:
        event = auth_events.UserLoginFailed(
            user_id=row["user_id"], name=row["name"], authenticator=kind, reason=reason
        )
        stream = user_events.stream_id(row["user_id"])
    await hub.store.append(stream, [event], metadata=_metadata(request))


async def complete_login(
    request: web.Request, found: Identity, next_url: str
) -> web.StreamResponse:
    """Start a session for ``found`` (creating the user if allowed) and go to ``next_url``."""
    auth = request.app[identity.AUTH]
    hub = request.app[HUB]
    try:
        name = _NAME.validate_python(found.name)
    except ValidationError:
        return _login_page(request, status=400, error=f"{found.name!r} is not a valid username")
    async with hub.store.session() as session:
        row: Any = await users_read.find(session.conn, name)  # or the new user, below
        if row is None:
            if not found.create:
                return _login_page(request, status=403, error="Invalid username or password")
            user_id = uuid4()
            await session.append(
                user_events.stream_id(user_id),
                [user_events.UserCreated(user_id=user_id, name=name, admin=found.admin is True)],
                expected=0,
                metadata=_metadata(request),
            )
            row = {"user_id": user_id, "name": name}
        elif found.admin is not None and found.admin != bool(row["admin"]):
            # made an admin, or (a JupyterHub class's explicit False) no longer one
            await session.append(
                user_events.stream_id(row["user_id"]),
                [user_events.UserAdminChanged(user_id=row["user_id"], admin=found.admin)],
                metadata=_metadata(request),
            )
        if found.after_login is not None:
            await found.after_login(session, row["user_id"], name, _metadata(request))
        started = await login_cookies.start(
            session,
            auth.cookies,
            row,
            authenticator=auth.authenticator.kind,
            metadata=_metadata(request, models.Actor(kind="user", name=name)),
        )
    response = html.redirect(next_url)
    auth.cookies.set(response, login_cookies.COOKIE_NAME, started.cookie, httponly=True)
    return response


async def oauth_login(request: web.Request) -> web.StreamResponse:
    """``GET /hub/oauth_login``: off to the upstream provider."""
    auth = request.app[identity.AUTH]
    if auth.authenticator.password_form:
        raise web.HTTPFound("/hub/login")
    return await auth.authenticator.redirect(
        request, html.safe_next(request, request.query.get("next"))
    )


async def oauth_callback(request: web.Request) -> web.StreamResponse:
    """``GET /hub/oauth_callback``: the provider vouches for someone; log them in."""
    auth = request.app[identity.AUTH]
    if auth.authenticator.password_form:
        raise web.HTTPNotFound
    try:
        found, next_url = await auth.authenticator.callback(request)
    except LoginFailed as failure:
        async with request.app[HUB].store.pool.acquire() as conn:
            if failure.status != 502:
                log.warning("upstream login refused: %s", failure.message)
            await _failed(request, conn, "", failure.reason)
        return identity.error_page(
            request, failure.status if failure.status != 502 else 403, failure.message
        )
    response = await complete_login(request, found, html.safe_next(request, next_url))
    auth.cookies.clear(response, "chronohub-oauth-state")
    return response


async def home(request: web.Request) -> web.StreamResponse:
    """``GET /hub/home``: who is signed in, and what they can do here."""
    row = identity.signed_in_user(request)
    auth = request.app[identity.AUTH]
    spawning = request.app.get(servers_api.SERVER_APP) is not None
    return identity.form_page(
        request,
        "home.html",
        user=row["name"],
        password_form=auth.authenticator.kind == "native",
        servers=await user_pages.home_servers(request, row["user_id"], row["name"])
        if spawning
        else [],
        allow_named=spawning and auth.settings.allow_named_servers,
        spawn_url=f"/hub/spawn/{user_pages.server_path(row['name'], '')}",
        admin_ui=access.caller_of(request).grants.holds(scope_table.ADMIN_UI),
        shared_projects=await user_pages.home_shared_projects(request),
        services=await services_api.displayed(request, access.caller_of(request)),
    )


async def logout_form(request: web.Request) -> web.StreamResponse:
    """``GET /hub/logout``: a button (signing out changes state, so it is a POST)."""
    row = identity.session_user(request)
    if row is None:
        raise web.HTTPFound("/hub/login")
    return identity.form_page(request, "logout.html", user=row["name"])


async def logout(request: web.Request) -> web.StreamResponse:
    """``POST /hub/logout`` (XSRF checked by the middleware): end the session."""
    row = identity.session_user(request)
    auth = request.app[identity.AUTH]
    if row is not None:
        async with request.app[HUB].store.session() as session:
            await login_cookies.end(
                session,
                row,
                metadata=_metadata(request, models.Actor(kind="user", name=row["name"])),
            )
    response = html.redirect("/hub/login")
    auth.cookies.clear(response, login_cookies.COOKIE_NAME)
    return response


async def password_form(request: web.Request) -> web.StreamResponse:
    """``GET /hub/password``: change your own password (native accounts)."""
    row = identity.signed_in_user(request)
    return _password_page(request, row)


def _password_page(
    request: web.Request,
    row: Any,
    *,
    status: int = 200,
    error: str | None = None,
    notice: str | None = None,
) -> web.Response:
    auth = request.app[identity.AUTH]
    if auth.authenticator.kind != "native":
        return identity.error_page(request, 404, "Passwords are kept by the login provider")
    return identity.form_page(
        request,
        "password.html",
        status=status,
        user=row["name"],
        error=error,
        notice=notice,
        min_length=auth.settings.min_password_length,
    )


async def change_password(request: web.Request) -> web.StreamResponse:
    """``POST /hub/password`` (XSRF checked by the middleware)."""
    row = identity.signed_in_user(request)
    auth = request.app[identity.AUTH]
    if auth.authenticator.kind != "native":
        return _password_page(request, row)
    form = await request.post()
    try:
        await signups.change_own_password(
            request.app[HUB].store,
            row,
            current=str(form.get("current_password", "")),
            new=str(form.get("password", "")),
            min_length=auth.settings.min_password_length,
            metadata=_metadata(request, models.Actor(kind="user", name=row["name"])),
        )
    except errors.HubError as exc:
        return _password_page(request, row, status=exc.status, error=exc.message)
    return _password_page(request, row, notice="Your password was changed")


async def signup_form(request: web.Request) -> web.StreamResponse:
    """``GET /hub/signup``: ask for an account (native, when ``allow_signup``)."""
    return _signup_page(request)


def _signup_page(
    request: web.Request,
    *,
    status: int = 200,
    error: str | None = None,
    notice: str | None = None,
    username: str = "",
) -> web.Response:
    auth = request.app[identity.AUTH]
    if not (auth.settings.allow_signup and auth.authenticator.kind == "native"):
        return identity.error_page(request, 404, "Signing up is not open on this hub")
    return identity.form_page(
        request,
        "signup.html",
        status=status,
        error=error,
        notice=notice,
        username=username,
        min_length=auth.settings.min_password_length,
    )


async def signup(request: web.Request) -> web.StreamResponse:
    """``POST /hub/signup``: record the request; an admin approves it."""
    auth = request.app[identity.AUTH]
    if not (auth.settings.allow_signup and auth.authenticator.kind == "native"):
        return _signup_page(request)
    try:
        await login_cookies.check_xsrf(request, auth.cookies)
    except errors.Forbidden as exc:
        return _signup_page(request, status=403, error=exc.message)
    form = await request.post()
    username = str(form.get("username", "")).strip().lower()
    try:
        await signups.request(
            request.app[HUB].store,
            username,
            str(form.get("password", "")),
            min_length=auth.settings.min_password_length,
            metadata=_metadata(request),
        )
    except errors.HubError as exc:
        return _signup_page(request, status=exc.status, error=exc.message, username=username)
    return _signup_page(
        request, notice="Thank you: an administrator will look at your request", username=username
    )


async def hub_root(request: web.Request) -> web.StreamResponse:
    """``GET /hub/``: home when signed in, else the login page."""
    raise web.HTTPFound("/hub/home" if identity.session_user(request) else "/hub/login")


def routes() -> list[web.RouteDef]:
    """The routes of this module."""
    return [
        web.get("/hub/", hub_root),
        web.get("/hub/login", login_form),
        web.post("/hub/login", login),
        web.get("/hub/oauth_login", oauth_login),
        web.get("/hub/oauth_callback", oauth_callback),
        web.get("/hub/logout", logout_form),
        web.post("/hub/logout", logout),
        web.get("/hub/home", home),
        web.get("/hub/password", password_form),
        web.post("/hub/password", change_password),
        web.get("/hub/signup", signup_form),
        web.post("/hub/signup", signup),
    ]
