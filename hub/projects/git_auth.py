"""Who may use a project over git's smart HTTP, and git's answers when they may not.

Credentials: an API token as the password of HTTP Basic (any user name; or as the user name
with an empty password), or ``Authorization: token <t>``. git sends no credentials until it
is answered 401, so an anonymous request for a non-public project gets 401; a signed-in caller
without read access 404 (existence does not leak); a reader who pushes 403, with a sentence
git shows as ``remote: …``. Apart from hub/projects/git_http.py (the protocol itself), which
calls ``authorize`` before a response starts.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from hub.auth import access
from hub.context import HUB
from hub.projects import access as project_access

REALM = 'Basic realm="chronohub", charset="UTF-8"'


def text(status: int, message: str, **headers: str) -> web.Response:
    """A plain answer whose body git shows the user."""
    # git shows the body of a 4xx answer to info/refs as "remote: <body>"
    return web.Response(status=status, text=message + "\n", headers=headers)


def _needs_credentials(full_name: str) -> web.Response:
    return text(
        401,
        f"credentials are needed for {full_name}: use a hub API token as the password",
        **{"WWW-Authenticate": REALM},
    )


def basic_token(header: str | None) -> str | None:
    """The token of ``Authorization: Basic`` (the password; the user name if that is empty)."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, password = decoded.partition(":")
    return password or user or None


async def _caller(request: web.Request) -> tuple[access.Caller | None, bool]:
    """The caller and whether credentials were given (a bad token is given credentials)."""
    header = request.headers.get("Authorization")
    if not header:
        return None, False
    if access.parse_authorization(header) is not None:
        return request.get(access.REQUEST_CALLER), True  # resolved by the access middleware
    secret = basic_token(header)
    if secret is None:
        return None, True
    async with request.app[HUB].store.pool.acquire() as conn:
        caller = await access.authenticate_in(request.app, conn, secret)
        if caller is not None:  # a token used by git is active, as on any API request
            await request.app[access.ACTIVITY].record(conn, caller)
        return caller, True


@dataclass(frozen=True)
class Allowed:
    """A request that may go on: the project's row and who asks."""

    project: Any
    caller: access.Caller | None


async def authorize(request: web.Request, need: project_access.Role) -> Allowed | web.Response:
    """The project of the URL if the caller may use it with role ``need``; else the answer."""
    owner = request.match_info["owner"]
    name = request.match_info["name"]
    if name.endswith(".git"):
        name = name[: -len(".git")]
    full_name = f"{owner}/{name}"
    caller, gave_credentials = await _caller(request)
    if gave_credentials and caller is None:
        return _needs_credentials(full_name)
    now: str | None = None
    async with request.app[HUB].store.pool.acquire() as conn:
        found = await project_access.lookup(conn, owner, name, caller)
        if found is None:
            now = await project_access.renamed(conn, owner, name, caller)
    if found is None:
        if now is not None:  # an old name: say where the project is now
            public = request.app[HUB].settings.public_url
            base = public.rstrip("/") if public else f"{request.scheme}://{request.host}"
            url = f"{base}/hub/git/{now}.git"
            return text(404, project_access.renamed_message(full_name, now, url))
        return _needs_credentials(full_name) if caller is None else _not_found(full_name)
    row, holder = found
    target = project_access.target_of(row)
    if project_access.decide(need, target, holder):
        return Allowed(row, caller)
    if caller is None:
        return _needs_credentials(target.full_name)
    if not project_access.decide("read", target, holder):
        return _not_found(full_name)
    return text(
        403,
        f"{caller.name} has read-only access to {target.full_name}; ask its owner for write access",
    )


def _not_found(full_name: str) -> web.Response:
    return text(404, f"project {full_name} not found")
