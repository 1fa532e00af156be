"""``/hub/token``: a signed-in user's API tokens and the applications they authorized.

The page JupyterHub has at the same address, server-rendered and usable without
JavaScript: request a new token (note, lifetime, scopes; shown this once, in the reply to
the form, never in a URL), see each token's scopes and last use, revoke a token, and revoke an
application's access (all the tokens its OAuth client holds). Issuing and revoking go through
the same functions as the REST API (``tokens_api.issue``/``revoke``), with the same rules and
events; the forms are XSRF-checked by ``identity.middleware``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hub import errors
from hub.api import tokens as tokens_api
from hub.auth import identity
from hub.context import HUB
from hub.reads import tokens as tokens_read
from hub.web import body

# Lifetimes offered for a new token (seconds, label); None: it does not expire.
LIFETIMES: tuple[tuple[int | None, str], ...] = (
    (3600, "1 hour"),
    (86400, "1 day"),
    (7 * 86400, "1 week"),
    (30 * 86400, "30 days"),
    (None, "Never"),
)


def lifetimes(limit: int) -> list[tuple[str, str]]:
    """The choices allowed under ``token_expires_in_max_seconds`` (0: no limit), as form
    values ('' for never)."""
    return [
        ("" if seconds is None else str(seconds), label)
        for seconds, label in LIFETIMES
        if not limit or (seconds is not None and seconds <= limit)
    ]


def form_command(form: Any) -> tokens_api.IssueToken:
    """The new-token form as the API's request; ``errors.BadRequest`` naming what is wrong."""
    expires = str(form.get("expires_in", "")).strip()
    requested = str(form.get("scopes", "")).split()
    data: dict[str, Any] = {
        "note": str(form.get("note", "")).strip() or None,
        "expires_in": int(expires) if _digits(expires) else (expires or None),
        "scopes": requested or None,
    }
    return body.validate(tokens_api.IssueToken, data)


def applications(rows: list[Any]) -> list[dict[str, Any]]:
    """The user's OAuth tokens gathered by client: one entry per authorized application."""
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        client = row["oauth_client"]
        if client is None:
            continue
        entry = found.setdefault(
            client,
            {
                "name": row["oauth_client_name"],
                "token_id": row["token_id"],
                "scopes": set(),
                "created": row["created"],
                "last_activity": row["last_activity"],
            },
        )
        entry["scopes"].update(row["scopes"])
        entry["created"] = min(entry["created"], row["created"])
        if row["last_activity"] is not None and (
            entry["last_activity"] is None or row["last_activity"] > entry["last_activity"]
        ):
            entry["last_activity"] = row["last_activity"]
    return [{**e, "scopes": sorted(e["scopes"])} for e in found.values()]


async def _page(
    request: web.Request,
    *,
    status: int = 200,
    error: str | None = None,
    notice: str | None = None,
    new_token: str | None = None,
) -> web.Response:
    row = _signed_in(request)
    hub = request.app[HUB]
    async with hub.store.pool.acquire() as conn:
        rows = await tokens_read.of_user(conn, row["user_id"])
    api_tokens = [
        {
            "id": r["token_id"],
            "note": r["note"] or "",
            "scopes": list(r["scopes"]),
            "created": r["created"],
            "last_activity": r["last_activity"],
            "expires_at": r["expires_at"],
        }
        for r in rows
        if r["oauth_client"] is None
    ]
    apps = applications(rows)
    return identity.form_page(
        request,
        "token.html",
        status=status,
        user=row["name"],
        error=error,
        notice=notice,
        new_token=new_token,
        api_tokens=api_tokens,
        applications=apps,
        lifetimes=lifetimes(hub.settings.token_expires_in_max_seconds),
    )


def _signed_in(request: web.Request) -> Any:
    row = identity.session_user(request)
    if row is None:
        raise web.HTTPFound("/hub/login?next=/hub/token")
    return row


async def token_page(request: web.Request) -> web.StreamResponse:
    """``GET /hub/token``."""
    return await _page(request)


async def request_token(request: web.Request) -> web.StreamResponse:
    """``POST /hub/token``: issue a token; the reply shows it this once."""
    row = _signed_in(request)
    form = await request.post()
    try:
        _, secret = await tokens_api.issue(request, row["name"], form_command(form))
    except errors.HubError as exc:
        return await _page(request, status=exc.status, error=exc.message)
    return await _page(
        request,
        status=201,
        notice="Your new API token (copy it now: it is not shown again)",
        new_token=secret,
    )


async def revoke_token(request: web.Request) -> web.StreamResponse:
    """``POST /hub/token/revoke``: revoke a token, or an application's access."""
    row = _signed_in(request)
    form = await request.post()
    token_id = str(form.get("token_id", ""))
    try:
        await tokens_api.revoke(request, row["name"], token_id)
    except errors.HubError as exc:
        return await _page(request, status=exc.status, error=exc.message)
    return await _page(request, notice="Revoked")


def routes() -> list[web.RouteDef]:
    """The routes of this module."""
    return [
        web.get("/hub/token", token_page),
        web.post("/hub/token", request_token),
        web.post("/hub/token/revoke", revoke_token),
    ]


def _digits(text: str) -> bool:
    """ASCII digits only (``str.isdigit`` alone takes '²', which ``int`` refuses)."""
    return text.isascii() and text.isdigit()
