"""Who is making a request: an API token (header, or ``?token=`` where allowed) or a browser
session cookie, turned into the ``access.Caller`` handlers check scopes against.

``resolve`` is the one function for that (the collab server reuses it). ``middleware`` runs
after ``access.middleware`` (which handles the ``Authorization`` header): when no header was
sent it authenticates the login cookie, as JupyterHub does, and then requires the XSRF token
on every request that is not GET, HEAD or OPTIONS, so a cookie can never be ridden across
sites to change something.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiohttp import web

from events import sql
from hub import errors
from hub import settings as hub_settings
from hub.auth import access, login_cookies, scope_table, scopes
from hub.auth.authenticators import base as authenticators
from hub.auth.login_throttle import Limits
from hub.context import HUB
from hub.errors import Handler
from hub.web import html

# The session row (session_id, user_id, name, admin, groups) of a cookie-authenticated request.
SESSION_USER: web.RequestKey[Any] = web.RequestKey("chronohub.session_user")


# Not cookie-checked here: the token endpoint authenticates the OAuth client, never a
# cookie; the login and signup forms check XSRF themselves, to answer with the form.
XSRF_CHECKED_ELSEWHERE = frozenset({"/hub/api/oauth2/token", "/hub/login", "/hub/signup"})


@dataclass(frozen=True)
class Auth:
    """The login machinery of a running hub."""

    settings: hub_settings.Settings
    cookies: login_cookies.Cookies
    authenticator: authenticators.Authenticator
    limits: Limits


AUTH = web.AppKey("chronohub.auth", Auth)


async def session_caller(conn: sql.Connection, row: Any) -> access.Caller:
    """The caller of a browser session: the user, with all of the user's own scopes."""
    owner_scopes, role_names = await access.user_scopes(
        conn, row["user_id"], row["name"], row["admin"]
    )
    owner = scopes.Owner.for_user(row["name"])
    effective = scopes.effective_token_scopes(
        [scopes.INHERIT], owner_scopes, owner=owner, groups_of={row["name"]: set(row["groups"])}
    )
    return access.Caller(
        kind="user",
        name=row["name"],
        user_id=row["user_id"],
        admin=bool(row["admin"]),
        token_id="",
        roles=role_names,
        expanded=effective,
        grants=scopes.Grants.of(effective),
    )


async def resolve(request: web.Request, *, allow_query_token: bool = False) -> access.Caller | None:
    """The caller of ``request``: ``Authorization`` token, then ``?token=`` (only when
    ``allow_query_token``), then the login cookie. None when none of them is valid.

    The XSRF check is not made here (a websocket upgrade is a GET); see ``middleware``.
    """
    hub = request.app[HUB]
    secret = access.parse_authorization(request.headers.get("Authorization"))
    if secret is None and allow_query_token:
        secret = request.query.get("token") or None
    auth = request.app[AUTH]
    cookie = request.cookies.get(login_cookies.COOKIE_NAME)
    async with hub.store.pool.acquire() as conn:
        if secret is not None:
            return await access.authenticate_in(request.app, conn, secret)
        row = await login_cookies.user_of(conn, auth.cookies, cookie)
        if row is None:
            return None
        if not isinstance(auth.authenticator, authenticators.SessionChecking):
            request[SESSION_USER] = row
            return await session_caller(conn, row)
    # A JupyterHub class's checks (refresh_user may call its provider): no connection held
    if not await auth.authenticator.session_valid(row["user_id"], row["name"]):
        return None  # as JupyterHub: signed out for this request, the login page next
    async with hub.store.pool.acquire() as conn:
        row = await login_cookies.user_of(conn, auth.cookies, cookie)  # a refresh may change it
        if row is None:
            return None
        request[SESSION_USER] = row
        return await session_caller(conn, row)


async def check_spawn(request: web.Request, caller: access.Caller, user_id: Any, name: str) -> None:
    """Before starting a server of ``name``: a JupyterHub authenticator's blocked users and
    ``refresh_pre_spawn``; ``errors.Forbidden`` when the user must log in again first."""
    authenticator = request.app[AUTH].authenticator
    if not isinstance(authenticator, authenticators.SessionChecking):
        return
    own_session = caller.kind == "user" and caller.name == name and not caller.token_id
    refusal = await authenticator.spawn_refusal(user_id, name, own_session=own_session)
    if refusal is not None:
        raise errors.Forbidden(refusal)


def middleware() -> Any:
    """Authenticate the login cookie when no token was sent, and check XSRF for it."""

    @web.middleware
    async def cookie_session(request: web.Request, handler: Handler) -> web.StreamResponse:
        if _token_decided(request) or login_cookies.COOKIE_NAME not in request.cookies:
            return await handler(request)
        caller = await resolve(request)
        if caller is not None:
            if (
                request.method not in login_cookies.SAFE_METHODS
                and request.path not in XSRF_CHECKED_ELSEWHERE
            ):
                await login_cookies.check_xsrf(request, request.app[AUTH].cookies)
            request[access.REQUEST_CALLER] = caller
            if caller.user_id is not None:
                await request.app[access.ACTIVITY].record_browser(
                    request.app[HUB].store.pool, caller.user_id
                )
        return await handler(request)

    return cookie_session


def _token_decided(request: web.Request) -> bool:
    """Whether ``access.middleware`` already decided (an ``Authorization`` header was sent)."""
    return access.REQUEST_CALLER in request


def session_user(request: web.Request) -> Any:
    """The session row of a cookie-authenticated request, or None (token or anonymous)."""
    return request.get(SESSION_USER)


def nav(request: web.Request, xsrf: str | None) -> html.Nav:
    """The navigation bar of a page for ``request``: the signed-in user (the session's, not a
    token's: pages are for browsers), with the admin link if they hold ``admin-ui`` (what the
    admin pages require), the audit timeline's if they hold a ``read:events`` scope, and a
    sign-out form carrying ``xsrf``."""
    row = session_user(request)
    if row is None:
        return html.Nav(here=request.path)
    caller = request.get(access.REQUEST_CALLER)
    held = caller.grants if isinstance(caller, access.Caller) else None
    admin = held is not None and held.holds(scope_table.ADMIN_UI)
    events = held is not None and any(held.holds(s) for s in scope_table.EVENT_SCOPES)
    return html.Nav(user=row["name"], admin=admin, events=events, xsrf=xsrf, here=request.path)


def signed_in_user(request: web.Request) -> Any:
    """The signed-in user's row, or a redirect to the login page that comes back here."""
    row = session_user(request)
    if row is None:
        raise web.HTTPFound("/hub/login?next=" + quote(request.path_qs, safe=""))
    return row


def form_page(
    request: web.Request, template: str, *, csp: str | None = None, **context: Any
) -> web.Response:
    """``html.render(template, **context)`` for a page with forms: ``xsrf`` is the token its
    forms carry (the navigation bar's sign-out button too), and the ``_xsrf`` cookie is set
    when the browser has none yet; ``csp``, the page's Content-Security-Policy."""
    cookies = request.app[AUTH].cookies
    token, new_cookie = login_cookies.xsrf_token(request, cookies)
    response = html.render(template, xsrf=token, nav=nav(request, token), **context)
    login_cookies.set_xsrf_cookie(response, cookies, new_cookie)
    if csp is not None:
        response.headers["Content-Security-Policy"] = csp
    return response


def error_page(
    request: web.Request, status: int, message: str, *, csp: str | None = None
) -> web.Response:
    """``html.error_page`` with the navigation bar of whoever is signed in."""
    row = session_user(request)
    return form_page(
        request,
        "error.html",
        csp=csp,
        status=status,
        code=status,
        reason=html.reason(status),
        error=message,
        user=row["name"] if row else None,
    )
