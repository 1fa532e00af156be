"""``/hub/api/users/{name}/tokens``: list, issue, read and revoke a user's API tokens.

A new token may carry only scopes its owner holds. The event records the token's id,
owner, scopes, expiry and note; the token itself is returned once and kept only as a hash.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from events import sql, store
from events.catalog import tokens as token_events
from hub import errors
from hub import settings as hub_settings
from hub.auth import access, roles, scope_table, scopes, tokens
from hub.context import HUB
from hub.reads import coalesce
from hub.reads import roles as roles_read
from hub.reads import tokens as tokens_read
from hub.reads import users as users_read
from hub.web import body, idempotency

OWNERS: web.AppKey[coalesce.Coalesced[str, Any]] = web.AppKey("chronohub.token_owners")
"""New tokens' owners by name, concurrent requests' read in one query (``owners``)."""


def owners(event_store: store.EventStore) -> coalesce.Coalesced[str, Any]:
    """What ``make_app`` keeps under ``OWNERS``."""
    return coalesce.Coalesced(event_store, tokens.new_token_owners)


class IssueToken(BaseModel):
    """``POST /users/{name}/tokens``."""

    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=1000)
    expires_in: StrictInt | None = Field(default=None, ge=1, le=hub_settings.MAX_LIFETIME_S)
    scopes: list[str] | None = Field(default=None, max_length=200)
    roles: list[str] | None = Field(
        default=None, max_length=50, description="Deprecated: the roles' scopes are used"
    )


def render(row: Any, user: str) -> dict[str, Any]:
    """JupyterHub's token model (without the token itself)."""
    return {
        "kind": "api_token",
        "id": row["token_id"],
        "user": user,
        "roles": [],
        "scopes": list(row["scopes"]),
        "note": row["note"],
        "created": body.iso(row["created"]),
        "last_activity": body.iso(row["last_activity"]),
        "expires_at": body.iso(row["expires_at"]),
        "session_id": None,
        "oauth_client": row["oauth_client_name"] or "JupyterHub",
    }


async def list_tokens(request: web.Request) -> web.Response:
    """``GET /users/{name}/tokens``."""
    hub = request.app[HUB]
    name = request.match_info["name"]
    async with hub.store.pool.acquire() as conn:
        await access.require(request, conn, [scope_table.READ_TOKENS], scopes.Filter.user(name))
        owner = await users_read.require(conn, name)
        rows = await tokens_read.of_user(conn, owner["user_id"])
    return web.json_response({"api_tokens": [render(row, name) for row in rows]})


async def get_token(request: web.Request) -> web.Response:
    """``GET /users/{name}/tokens/{token_id}``."""
    hub = request.app[HUB]
    name, token_id = request.match_info["name"], request.match_info["token_id"]
    async with hub.store.pool.acquire() as conn:
        await access.require(request, conn, [scope_table.READ_TOKENS], scopes.Filter.user(name))
        owner = await users_read.require(conn, name)
        row = await tokens_read.require(conn, owner["user_id"], token_id)
    return web.json_response(render(row, name))


async def issue_token(request: web.Request) -> web.Response:
    """``POST /users/{name}/tokens``: 201 with the token, shown this once."""
    command = await body.parse(request, IssueToken, allow_empty=True)
    row, secret = await issue(request, request.match_info["name"], command)
    reply = render(row, request.match_info["name"])
    reply["token"] = secret
    return web.json_response(reply, status=201)


async def issue(request: web.Request, name: str, command: IssueToken) -> tuple[dict[str, Any], str]:
    """Issue a token to user ``name`` as the request's caller asks: its row and its secret.

    Raises ``errors.HubError`` (with JupyterHub's messages) for what may not be issued."""
    hub = request.app[HUB]
    limit = hub.settings.token_expires_in_max_seconds
    if limit and (command.expires_in is None or command.expires_in > limit):
        raise errors.BadRequest(f"expires_in must be at most {limit} seconds")
    caller = access.caller_of(request)
    # Judged on the owner as read here (concurrent requests' owners in one query), then
    # written with the owner checked again in the append's transaction
    # (tokens.issue_to_user): the append and the token's hash commit with other requests'
    # (group commit), one transaction for a batch of tokens instead of one each. Only the
    # owner's existence and name are checked again there: a `!group=` grant and the owner's
    # scopes are as read here (docs/api.md, Tokens).
    owner = await request.app[OWNERS].get(name)
    if owner is None or not caller.grants.allows(
        scope_table.TOKENS,
        scopes.Filter.user(name),
        groups_of={name: list(owner["groups"])},
    ):
        raise tokens.owner_not_found(name)
    requested = [scopes.INHERIT]
    if command.scopes or command.roles:  # roles to look up, the owner's scopes to check
        async with hub.store.connection() as conn:
            requested = await _requested_scopes(conn, command)
            await access.check_token_request(conn, owner, requested)
    note = command.note or _default_note(caller, name)
    issued = await tokens.issue_to_user(
        hub.store,
        owner_name=name,
        user_id=owner["user_id"],
        scopes=requested,
        note=note,
        expires_in=command.expires_in,
        now=datetime.now(UTC),
        metadata=access.event_metadata(request, caller),
    )
    # The row the tokens read model holds now (``user_token``), from what was just written:
    # reading it back was one more round trip per token.
    row = {
        "token_id": issued.token_id,
        "scopes": requested,
        "note": note,
        "created": issued.created,
        "last_activity": None,  # not used yet
        "expires_at": issued.expires_at,
        "oauth_client": None,
        "oauth_client_name": None,  # an API token
    }
    return row, issued.secret


def _default_note(caller: access.Caller, owner: str) -> str:
    """JupyterHub's note for a token requested without one."""
    if caller.kind == "user" and caller.name == owner:
        return "Requested via api"
    return f"Requested via api by {caller.kind} {caller.name}"


async def _requested_scopes(conn: sql.Connection, command: IssueToken) -> list[str]:
    """The token's raw scopes: those asked for, the deprecated roles' scopes, or ``inherit``."""
    requested = list(command.scopes or [])
    for role in command.roles or []:
        row = await roles_read.find(conn, role)
        if row is None:
            default = roles.DEFAULT_ROLES.get(role)
            if default is None:
                raise errors.BadRequest(f"No such role: {role}")
            requested += default.scopes
        else:
            requested += row["scopes"]
    if not requested:
        return [scopes.INHERIT]
    return list(dict.fromkeys(requested))


async def revoke_token(request: web.Request) -> web.Response:
    """``DELETE /users/{name}/tokens/{token_id}``: 204; it stops working at once.

    A token issued through OAuth takes the user's other tokens of the same client along (the
    client's access is revoked), as in JupyterHub.
    """
    await revoke(request, request.match_info["name"], request.match_info["token_id"])
    return web.Response(status=204)


async def revoke(request: web.Request, name: str, token_id: str) -> None:
    """Revoke user ``name``'s token ``token_id`` (and, for an OAuth token, the user's other
    tokens of its client) as the request's caller; ``errors.HubError`` if it may not."""
    hub = request.app[HUB]
    async with hub.store.session() as session:
        conn = session.conn
        caller = await access.require(request, conn, [scope_table.TOKENS], scopes.Filter.user(name))
        owner = await users_read.require(conn, name)
        row = await tokens_read.require(conn, owner["user_id"], token_id)
        revoked = [token_id]
        if row["oauth_client"] is not None:
            revoked = await tokens_read.of_client(conn, owner["user_id"], row["oauth_client"])
        metadata = access.event_metadata(request, caller)
        for each in revoked:
            await session.append(
                token_events.stream_id(each),
                [token_events.TokenRevoked(token_id=each)],
                metadata=metadata,
            )


def routes() -> list[web.RouteDef]:
    """The routes of this module."""
    return [
        web.get("/hub/api/users/{name}/tokens", list_tokens),
        # a retry's key and answer commit with the token's event (EventStore.pinned)
        web.post("/hub/api/users/{name}/tokens", idempotency.in_transaction(issue_token)),
        web.get("/hub/api/users/{name}/tokens/{token_id}", get_token),
        web.delete("/hub/api/users/{name}/tokens/{token_id}", revoke_token),
    ]
