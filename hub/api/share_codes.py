"""JupyterHub 5's share codes: ``/hub/api/share-codes/{owner}[/{server_name}]``, and their
exchange on the accept page (``hub/pages/shares.py``).

A share code carries a share's scopes (``hub/api/shares.py``) for whoever accepts it before it
expires. It is returned once, in the reply that issues it; only its SHA-256 is kept, beside
the events, and its events name it by id (``sc_N``) and first characters. Accepting one adds
its scopes to the user's share of the server (``share.code_accepted`` then ``share.granted``)
and counts the exchange.
"""

from __future__ import annotations

import dataclasses
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from events import models, sql, store
from events.catalog import shares as share_events
from hub import errors
from hub.api import models as api_models
from hub.api import shares
from hub.auth import access, scope_table, scopes, tokens
from hub.context import HUB
from hub.web import body, pagination

queries = shares.queries
SERVER = shares.SERVER

DEFAULT_CODE_LIFETIME_S = 86400
# JupyterHub's bounds on a share code's lifetime: a minute to a year.
MIN_CODE_LIFETIME_S = 60
MAX_CODE_LIFETIME_S = 365 * 86400


class NewCode(BaseModel):
    """``POST /share-codes/{owner}/{server_name}``."""

    model_config = ConfigDict(extra="forbid")

    scopes: list[str] | None = Field(default=None, max_length=shares.MAX_SCOPES)
    expires_in: int = Field(
        default=DEFAULT_CODE_LIFETIME_S, ge=MIN_CODE_LIFETIME_S, le=MAX_CODE_LIFETIME_S
    )


class ShareCode(shares.Reply):
    """A share code's metadata (never the code, but once, when it is issued)."""

    server: shares.SharedServer
    scopes: list[str]
    id: str
    created_at: str
    expires_at: str
    exchange_count: int
    last_exchanged_at: str | None


class NewShareCode(ShareCode):
    """``POST /share-codes/...``: the code's metadata and, this once, the code."""

    code: str
    accept_url: str
    full_accept_url: str | None


class ShareCodePage(shares.Reply):
    """A page of share codes."""

    items: list[ShareCode]
    pagination: api_models.Pagination = Field(alias="_pagination")


def render_code(row: Any, public_url: str | None) -> dict[str, Any]:
    """The spec's ``ShareCode`` for a ``codes_page``/``code_by_id`` row."""
    owner, server_name = row["owner"], row["server_name"]
    return {
        "server": shares.server_model(owner, server_name, row["ready"], public_url),
        "scopes": shares.filtered(list(row["scopes"]), owner, server_name),
        "id": row["code_id"],
        "created_at": body.iso(row["created"]),
        "expires_at": body.iso(row["expires_at"]),
        "exchange_count": row["exchange_count"],
        "last_exchanged_at": body.iso(row["last_exchanged_at"]),
    }


# --- /share-codes ----------------------------------------------------------------------------


async def _codes_page(
    request: web.Request, owner_name: str, server_name: str | None, target: scopes.Filter
) -> web.Response:
    hub = request.app[HUB]
    page = shares.page_of(request)
    async with hub.store.pool.acquire() as conn:
        await access.require(request, conn, [scope_table.READ_SHARES], target)
        owner = await shares.owner_of(conn, owner_name)
        if server_name is not None:
            await shares.require_server(conn, owner, server_name)
        rows = list(
            await conn.fetch(
                queries["codes_page"], owner["user_id"], server_name, page.offset, page.limit
            )
        )
        total = (
            int(rows[0]["total"])
            if rows
            else int(await conn.fetchval(queries["codes_count"], owner["user_id"], server_name))
        )
    items = [render_code(r, hub.settings.public_url) for r in rows]
    return web.json_response(pagination.reply(request, page, items, total, hub.settings.public_url))


async def list_owner_codes(request: web.Request) -> web.Response:
    """``GET /share-codes/{owner}``: live share codes of any of the owner's servers."""
    owner = request.match_info["owner"]
    return await _codes_page(request, owner, None, scopes.Filter.user(owner))


async def list_server_codes(request: web.Request) -> web.Response:
    """``GET /share-codes/{owner}/{server_name}``: live share codes of one server."""
    owner, server_name, target = shares.server_target(request)
    return await _codes_page(request, owner, server_name, target)


def new_code() -> str:
    """A share code: 192 random bits, URL-safe."""
    return secrets.token_urlsafe(24)


async def create_code(request: web.Request) -> web.Response:
    """``POST /share-codes/{owner}/{server_name}``: issue a code; the reply holds it, once."""
    hub = request.app[HUB]
    owner_name, server_name, target = shares.server_target(request)
    command = await body.parse(request, NewCode, allow_empty=True)
    code = new_code()
    async with hub.store.session() as session:
        conn = session.conn
        caller = await access.require(request, conn, [scope_table.SHARES], target)
        owner = await shares.owner_of(conn, owner_name)
        await shares.require_server(conn, owner, server_name)
        wanted = shares.share_scopes(command.scopes, owner["name"], server_name)
        await shares.check_held(conn, caller, wanted, owner["name"])
        await conn.execute(queries["code_secrets_purge_expired"])
        code_id = f"sc_{await conn.fetchval(queries['code_number'])}"
        await conn.execute(queries["code_secret_store"], code_id, tokens.digest(code))
        await session.append(
            share_events.stream_id(owner["user_id"], server_name),
            [
                share_events.ShareCodeCreated(
                    owner_id=owner["user_id"],
                    owner=owner["name"],
                    server_name=server_name,
                    user_ids=[owner["user_id"]],
                    code_id=code_id,
                    code_prefix=code[:4],
                    scopes=wanted,
                    expires_at=datetime.now(UTC) + timedelta(seconds=command.expires_in),
                )
            ],
            metadata=access.event_metadata(request, caller),
        )
        row = await conn.fetchrow(queries["code_by_id"], code_id)
    accept_url = f"/hub/accept-share?code={quote(code, safe='')}"
    public_url = hub.settings.public_url
    reply = {
        **render_code(row, public_url),
        "code": code,
        "accept_url": accept_url,
        "full_accept_url": public_url.rstrip("/") + accept_url if public_url else None,
    }
    return web.json_response(reply)


async def revoke_codes(request: web.Request) -> web.Response:
    """``DELETE /share-codes/{owner}/{server_name}``: revoke one code (``?code=`` or ``?id=``)
    or, with neither, every code of the server; 204."""
    hub = request.app[HUB]
    owner_name, server_name, target = shares.server_target(request)
    by_code, by_id = request.query.get("code"), request.query.get("id")
    if by_code is not None and by_id is not None:
        raise errors.BadRequest("code, id: specify at most one of 'code' and 'id'")
    async with hub.store.session() as session:
        conn = session.conn
        caller = await access.require(request, conn, [scope_table.SHARES], target)
        owner = await shares.owner_of(conn, owner_name)
        await shares.require_server(conn, owner, server_name)
        mine = [
            r["code_id"]
            for r in await conn.fetch(queries["code_ids_of_server"], owner["user_id"], server_name)
        ]
        if by_code is not None:
            found = await conn.fetchval(queries["code_id_by_hash"], tokens.digest(by_code))
            if found not in mine:
                raise errors.NotFound("No such share code")
            mine = [found]
        elif by_id is not None:
            if by_id not in mine:
                raise errors.NotFound(f"No such share code: {by_id}")
            mine = [by_id]
        if mine:
            await conn.execute(queries["code_secrets_delete"], mine)
            await session.append(
                share_events.stream_id(owner["user_id"], server_name),
                [
                    share_events.ShareCodesRevoked(
                        owner_id=owner["user_id"],
                        owner=owner["name"],
                        server_name=server_name,
                        user_ids=[owner["user_id"]],
                        code_ids=mine,
                    )
                ],
                metadata=access.event_metadata(request, caller),
            )
    return web.Response(status=204)


@dataclasses.dataclass(frozen=True)
class CodeOffer:
    """What a share code offers, as the accept page shows it."""

    code_id: str
    owner: str
    server_name: str
    scopes: list[str]
    expires_at: datetime


async def offer(conn: sql.Connection, code: str) -> CodeOffer:
    """What the live share code ``code`` gives; ``errors.NotFound`` if it is unknown, revoked
    or expired."""
    row = await conn.fetchrow(queries["code_by_hash"], tokens.digest(code))
    if row is None:
        raise errors.NotFound("This share code is not valid: it may have expired or been revoked")
    return CodeOffer(
        row["code_id"],
        row["owner"],
        row["server_name"],
        shares.filtered(list(row["scopes"]), row["owner"], row["server_name"]),
        row["expires_at"],
    )


async def accept(
    event_store: store.EventStore, user: Any, code: str, metadata: models.Metadata
) -> CodeOffer:
    """``user`` (a session row: user_id, name) exchanges ``code``: the code's scopes are added
    to their share of its server. ``errors.NotFound`` for a dead code, ``BadRequest`` for the
    server's own owner."""
    async with event_store.session() as session:
        conn = session.conn
        row = await conn.fetchrow(queries["code_by_hash"], tokens.digest(code))
        if row is None:
            raise errors.NotFound(
                "This share code is not valid: it may have expired or been revoked"
            )
        if row["owner_id"] == user["user_id"]:
            raise errors.BadRequest("This share code is for your own server")
        owner = {"user_id": row["owner_id"], "name": row["owner"]}
        recipient = shares.Recipient("user", user["user_id"], user["name"])
        concerning = shares.concerning(owner, recipient)
        scopes_given = shares.filtered(list(row["scopes"]), row["owner"], row["server_name"])
        await session.append(
            share_events.stream_id(row["owner_id"], row["server_name"]),
            [
                share_events.ShareCodeAccepted(
                    owner_id=row["owner_id"],
                    owner=row["owner"],
                    server_name=row["server_name"],
                    user_ids=concerning["user_ids"],
                    code_id=row["code_id"],
                    recipient_id=user["user_id"],
                    recipient=user["name"],
                ),
                share_events.ShareGranted(
                    server_name=row["server_name"],
                    scopes=scopes_given,
                    code_id=row["code_id"],
                    **concerning,
                ),
            ],
            metadata=metadata,
        )
    return CodeOffer(
        row["code_id"], row["owner"], row["server_name"], scopes_given, row["expires_at"]
    )


def routes() -> list[web.RouteDef]:
    """The routes of this module."""
    codes = f"/hub/api/share-codes/{{owner}}/{SERVER}"
    return [
        web.get("/hub/api/share-codes/{owner}", list_owner_codes),
        web.get(codes, list_server_codes),
        web.post(codes, create_code),
        web.delete(codes, revoke_codes),
    ]
