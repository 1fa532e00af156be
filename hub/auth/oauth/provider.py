"""The hub as an OAuth2 provider: ``/hub/api/oauth2/authorize`` and ``/hub/api/oauth2/token``.

Authorization code grant with PKCE (S256), as JupyterHub's provider answers HubOAuth and
jupyterhub-singleuser. oauthlib supplies the protocol's vocabulary: its error classes (the
``error`` codes, statuses and the redirect carrying them) and its S256 check. Its
``WebApplicationServer`` is not used: its request validator is synchronous (every lookup
would block the event loop on the database) and it refuses the relative redirect URIs
JupyterHub's clients register unless patched module-wide, as JupyterHub does. What it would
decide is small and lives here as pure functions (``decide_scopes``, ``needs_consent``,
``check_exchange``), tested on their own.

JupyterHub's rules: a user may authorize a client only with access to its server or service
(``access:servers!server=u/s``, ``access:services!service=s``; 403 otherwise). Requested
scopes must be within the client's allowed scopes (else ``invalid_scope``); those the user
does not hold are dropped; the access scope is always granted. The consent page is skipped
for the user's own server, ``oauth_no_confirm`` clients, and scopes approved before. Codes
are single-use (deleted by the exchange that takes them), expire after
``oauth_code_expires_in_seconds`` and are kept only as a hash; the events record the code's
public id, never the code or the token.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote

from aiohttp import web
from oauthlib.oauth2.rfc6749 import errors as oauth_errors
from oauthlib.oauth2.rfc6749.grant_types.authorization_code import code_challenge_method_s256
from pydantic import BaseModel

from events import models, sql
from events.catalog import auth as auth_events
from hub.auth import access, identity, scopes, tokens
from hub.auth.oauth import clients as oauth_clients
from hub.context import HUB
from hub.web import html

queries = sql.Queries(__package__ or "hub.auth.oauth", "oauth.sql")

# RFC 7636 section 4.1: 43 to 128 characters of [A-Z a-z 0-9 - . _ ~].
VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
AUTHORIZE_PARAMS = (
    "client_id",
    "redirect_uri",
    "response_type",
    "state",
    "scope",
    "code_challenge",
    "code_challenge_method",
)


class TokenReply(BaseModel):
    """``POST /oauth2/token``'s answer (no refresh token, as JupyterHub's)."""

    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    scope: str


class ClientRejected(Exception):
    """An authorize request that must not redirect (unknown client, unregistered redirect)."""

    def __init__(self, message: str, status: int = 400) -> None:
        self.message = message
        self.status = status
        super().__init__(message)


# --- decisions (pure) ------------------------------------------------------------------------


def requested_scopes(raw: str | None, client: oauth_clients.Client) -> list[str]:
    """The ``scope`` parameter as a list; the client's allowed scopes when none is asked."""
    asked = [s for s in (raw or "").split() if s != "identify"]  # 'identify': JupyterHub 1.x
    return asked or list(client.allowed_scopes)


def decide_scopes(
    requested: Iterable[str],
    client: oauth_clients.Client,
    user: scopes.Owner,
    user_grants: scopes.Grants,
    groups_of: scopes.Membership | None = None,
) -> list[str]:
    """The scopes a code grants: the requested ones within the client's allowed scopes
    (``InvalidScopeError`` naming the others), minus those the user lacks, plus access."""
    allowed = scopes.Grants.of(
        scopes.expand([*client.allowed_scopes, client.access_scope], owner=user)
    )
    granted: list[str] = []
    refused: list[str] = []
    for text in dict.fromkeys([*requested, client.access_scope]):
        try:
            expanded = scopes.expand([text], owner=user)
        except scopes.ScopeError as exc:
            raise oauth_errors.InvalidScopeError(description=str(exc)) from exc
        if not all(allowed.allows(s.name, s.filter, groups_of=groups_of) for s in expanded):
            refused.append(text)
        elif all(user_grants.allows(s.name, s.filter, groups_of=groups_of) for s in expanded):
            granted.append(text)
    if refused:
        raise oauth_errors.InvalidScopeError(
            description=f"scope(s) not allowed for client {client.client_id}: {' '.join(refused)}"
        )
    return sorted(granted)


def needs_consent(
    client: oauth_clients.Client, user: str, granted: Iterable[str], approved: Iterable[str]
) -> bool:
    """Whether to ask the user: not for their own server, ``no_confirm`` clients, or scopes
    they approved for this client before."""
    if client.no_confirm or (client.kind == "server" and client.owner == user):
        return False
    return not set(granted) <= set(approved)


def check_pkce_request(challenge: str | None, method: str | None) -> None:
    """A code challenge, if sent, must be S256 (``plain`` adds nothing over no PKCE)."""
    if challenge is None:
        if method is not None:
            raise oauth_errors.InvalidRequestError(
                description="code_challenge_method without a code_challenge"
            )
        return
    if method != "S256":
        raise oauth_errors.InvalidRequestError(
            description=f"code_challenge_method must be S256, not {method or 'plain'}"
        )
    if not re.fullmatch(r"[A-Za-z0-9\-_]{43}", challenge):
        raise oauth_errors.InvalidRequestError(
            description="code_challenge must be a base64url SHA-256 (43 characters)"
        )


@dataclass(frozen=True)
class Exchange:
    """A token request, as the decision needs it."""

    client_id: str
    redirect_uri: str | None
    code_verifier: str | None


def check_exchange(code: Mapping[str, Any], request: Exchange, now: datetime) -> None:
    """Raise the OAuth error refusing to exchange ``code`` (a taken ``oauth_codes`` row)."""
    if code["client_id"] != request.client_id:
        raise oauth_errors.InvalidGrantError(
            description="the authorization code was issued to another client"
        )
    if code["expires_at"] <= now:
        raise oauth_errors.InvalidGrantError(description="the authorization code has expired")
    if request.redirect_uri is not None and request.redirect_uri != code["redirect_uri"]:
        raise oauth_errors.InvalidGrantError(
            description="redirect_uri does not match the one of the authorization request"
        )
    challenge = code["code_challenge"]
    if challenge is None:
        return
    verifier = request.code_verifier
    if not verifier:
        raise oauth_errors.InvalidRequestError(
            description="code_verifier is required: the code was issued with a code_challenge"
        )
    if not VERIFIER.match(verifier) or not code_challenge_method_s256(verifier, challenge):
        raise oauth_errors.InvalidGrantError(
            description="code_verifier does not match the code_challenge"
        )


# --- authorize -------------------------------------------------------------------------------


def _oauth_redirect(error: oauth_errors.OAuth2Error, redirect_uri: str) -> web.Response:
    return html.redirect(error.in_uri(redirect_uri))


def _with_query(uri: str, **params: str) -> str:
    """``uri`` with ``params`` added to its query (kept as the client registered it)."""
    separator = "&" if "?" in uri else "?"
    return uri + separator + "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())


async def _params(request: web.Request) -> dict[str, str]:
    source: Mapping[str, Any] = request.query
    if request.method == "POST":
        source = await request.post()
    values = {}
    for name in AUTHORIZE_PARAMS:
        value = source.get(name)
        if isinstance(value, str):
            values[name] = value
    return values


async def authorize(request: web.Request) -> web.StreamResponse:
    """``GET`` (ask) and ``POST`` (the consent form, XSRF-checked) ``/hub/api/oauth2/authorize``."""
    hub = request.app[HUB]
    params = await _params(request)
    async with hub.store.pool.acquire() as conn:
        try:
            client, redirect_uri = await _client_and_redirect(conn, params)
        except ClientRejected as exc:
            return identity.error_page(request, exc.status, exc.message)
        row = identity.session_user(request)
        if row is None:
            if request.method == "POST":
                return identity.error_page(request, 403, "Sign in first")
            raise web.HTTPFound("/hub/login?next=" + quote(request.path_qs, safe=""))
        state = params.get("state")
        try:
            if params.get("response_type") != "code":
                raise oauth_errors.UnsupportedResponseTypeError(
                    description="response_type must be code", state=state
                )
            check_pkce_request(params.get("code_challenge"), params.get("code_challenge_method"))
            caller = await identity.session_caller(conn, row)
            membership = {row["name"]: set(row["groups"])}
            access_scope = scopes.parse_scope(client.access_scope)
            if not caller.grants.allows(
                access_scope.name, access_scope.filter, groups_of=membership
            ):
                return identity.error_page(
                    request,
                    403,
                    f"You do not have permission to access {client.description}",
                )
            granted = decide_scopes(
                requested_scopes(params.get("scope"), client),
                client,
                scopes.Owner.for_user(row["name"]),
                caller.grants,
                membership,
            )
            approved = await conn.fetchval(queries["grant_get"], row["user_id"], client.client_id)
        except oauth_errors.OAuth2Error as error:
            error.state = state
            return _oauth_redirect(error, redirect_uri)
    if request.method == "POST":
        form = await request.post()
        chosen = {v for v in form.getall("scopes", []) if isinstance(v, str)}
        granted = sorted((set(granted) & chosen) | {client.access_scope})
    elif needs_consent(client, row["name"], granted, approved or []):
        return identity.form_page(
            request,
            "oauth_consent.html",
            user=row["name"],
            client_id=client.client_id,
            client_description=client.description,
            scopes=granted,
            params=sorted(params.items()),
        )
    code = await _issue_code(request, client, row, redirect_uri, granted, params)
    location = _with_query(redirect_uri, code=code, **({"state": state} if state else {}))
    raise web.HTTPFound(location)


async def _client_and_redirect(
    conn: sql.Connection, params: Mapping[str, str]
) -> tuple[oauth_clients.Client, str]:
    client_id = params.get("client_id")
    if not client_id:
        raise ClientRejected("client_id is required")
    client = await oauth_clients.get(conn, client_id)
    if client is None:
        raise ClientRejected(f"Unknown OAuth client: {client_id}")
    redirect_uri = params.get("redirect_uri") or client.redirect_uri
    if redirect_uri != client.redirect_uri:
        raise ClientRejected(
            f"redirect_uri {redirect_uri} is not registered for OAuth client {client_id}"
        )
    return client, redirect_uri


async def _issue_code(
    request: web.Request,
    client: oauth_clients.Client,
    user: Any,
    redirect_uri: str,
    granted: list[str],
    params: Mapping[str, str],
) -> str:
    hub = request.app[HUB]
    code = secrets.token_urlsafe(24)
    code_id = "c" + secrets.token_hex(8)
    expires_at = datetime.now(UTC) + timedelta(seconds=hub.settings.oauth_code_expires_in_seconds)
    async with hub.store.session() as session:
        await session.conn.execute(queries["code_purge_expired"])
        await session.conn.execute(
            queries["code_create"],
            code_id,
            tokens.digest(code),
            client.client_id,
            user["user_id"],
            redirect_uri,
            granted,
            params.get("code_challenge"),
            params.get("code_challenge_method") if params.get("code_challenge") else None,
            expires_at,
        )
        await session.append(
            auth_events.code_stream(code_id),
            [
                auth_events.OAuthCodeIssued(
                    code_id=code_id,
                    client_id=client.client_id,
                    user_id=user["user_id"],
                    scopes=granted,
                    expires_at=expires_at,
                )
            ],
            expected=0,
            metadata=access.request_metadata(request, models.Actor(kind="user", name=user["name"])),
        )
    return code


# --- token -----------------------------------------------------------------------------------


def _oauth_error_response(error: oauth_errors.OAuth2Error) -> web.Response:
    """oauthlib's error body, plus JupyterHub's ``status``/``message`` for humans."""
    body = dict(error.twotuples)
    body["status"] = error.status_code
    body["message"] = error.description or error.error
    response = web.json_response(body, status=error.status_code)
    response.headers.update({"Cache-Control": "no-store", "Pragma": "no-cache"})
    if error.status_code == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="chronohub"'
    return response


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (client_id, secret) if sep else None


async def token(request: web.Request) -> web.Response:
    """``POST /hub/api/oauth2/token``: a code (and its PKCE verifier) for an access token."""
    try:
        return await _token(request)
    except oauth_errors.OAuth2Error as error:
        return _oauth_error_response(error)


async def _token(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    if request.content_type != "application/x-www-form-urlencoded":
        raise oauth_errors.InvalidRequestError(
            description="the token request must be application/x-www-form-urlencoded"
        )
    form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    if form.get("grant_type") != "authorization_code":
        raise oauth_errors.UnsupportedGrantTypeError(
            description="grant_type must be authorization_code"
        )
    basic = _basic_credentials(request.headers.get("Authorization"))
    client_id, secret = basic or (form.get("client_id", ""), form.get("client_secret", ""))
    code = form.get("code")
    async with hub.store.pool.acquire() as conn:
        client = await oauth_clients.get(conn, client_id) if client_id else None
        if (
            client is None
            or not secret
            or not await conn.fetchval(
                queries["client_secret_matches"], client_id, tokens.digest(secret)
            )
        ):
            raise oauth_errors.InvalidClientError(
                description="client authentication failed: unknown client or wrong secret"
            )
        if not code:
            raise oauth_errors.InvalidRequestError(description="the code parameter is missing")
        # Taken (deleted) before it is checked: a code is spent by any attempt, right or wrong.
        taken = await conn.fetchrow(queries["code_take"], tokens.digest(code))
    if taken is None:
        raise oauth_errors.InvalidGrantError(
            description="invalid authorization code: unknown, already used or expired"
        )
    check_exchange(
        taken,
        Exchange(client_id, form.get("redirect_uri"), form.get("code_verifier")),
        taken["now"],
    )
    expires_in = hub.settings.oauth_token_expires_in_seconds or hub.settings.cookie_max_age_seconds
    actor = (
        models.Actor(kind="service", name=client.owner)
        if client.kind == "service"
        else models.Actor(kind="user", name=taken["user_name"])
    )
    metadata = access.request_metadata(request, actor)
    async with hub.store.session() as session:
        issued = await tokens.issue(
            session,
            owner_name=taken["user_name"],
            user_id=taken["user_id"],
            scopes=list(taken["scopes"]),
            note=f"OAuth token for {client.description} ({client.client_id})",
            expires_in=expires_in,
            now=datetime.now(UTC),
            metadata=metadata,
            oauth_client=client.client_id,
        )
        await session.append(
            auth_events.code_stream(taken["code_id"]),
            [
                auth_events.OAuthCodeExchanged(
                    code_id=taken["code_id"],
                    client_id=client.client_id,
                    user_id=taken["user_id"],
                    token_id=issued.token_id,
                    scopes=list(taken["scopes"]),
                )
            ],
            metadata=metadata,
        )
    response = web.json_response(
        {
            "access_token": issued.secret,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "scope": " ".join(taken["scopes"]),
        }
    )
    response.headers.update({"Cache-Control": "no-store", "Pragma": "no-cache"})
    return response


def routes() -> list[web.RouteDef]:
    """The routes of this module."""
    return [
        web.get("/hub/api/oauth2/authorize", authorize),
        web.post("/hub/api/oauth2/authorize", authorize),
        web.post("/hub/api/oauth2/token", token),
    ]
