"""``/hub/accept-share?code=…``: a signed-in user accepts a share code (JupyterHub 5's page).

``GET`` shows what the code gives (whose server, which scopes, until when) with a form;
``POST`` (XSRF-checked by ``identity.middleware``, like every form) exchanges it, through the
same function as the API's rules (``share_codes.accept``), and sends the browser to the server.
Not signed in: to the login page and back here.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from events import models
from hub import errors
from hub.api import share_codes
from hub.auth import access, identity
from hub.context import HUB
from hub.servers import rules

PATH = "/hub/accept-share"


def _signed_in(request: web.Request, code: str) -> Any:
    row = identity.session_user(request)
    if row is None:
        back = f"{PATH}?code={quote(code, safe='')}" if code else PATH
        raise web.HTTPFound("/hub/login?next=" + quote(back, safe=""))
    return row


async def accept_page(request: web.Request) -> web.StreamResponse:
    """``GET /hub/accept-share?code=…``: the confirmation form."""
    code = request.query.get("code", "")
    _signed_in(request, code)
    if not code:
        return identity.error_page(request, 400, "code: the share code is missing")
    async with request.app[HUB].store.pool.acquire() as conn:
        try:
            offer = await share_codes.offer(conn, code)
        except errors.HubError as exc:
            return identity.error_page(request, exc.status, exc.message)
    return identity.form_page(
        request,
        "accept_share.html",
        owner=offer.owner,
        server_url=rules.prefix(offer.owner, offer.server_name),
        scopes=offer.scopes,
        expires_at=offer.expires_at,
        code=code,
    )


async def accept(request: web.Request) -> web.StreamResponse:
    """``POST /hub/accept-share``: exchange the code; 302 to the shared server."""
    form = await request.post()
    code = str(form.get("code", ""))
    row = _signed_in(request, code)
    if not code:
        return identity.error_page(request, 400, "code: the share code is missing")
    metadata = access.request_metadata(request, models.Actor(kind="user", name=row["name"]))
    try:
        offer = await share_codes.accept(request.app[HUB].store, row, code, metadata)
    except errors.HubError as exc:
        return identity.error_page(request, exc.status, exc.message)
    raise web.HTTPFound(rules.prefix(offer.owner, offer.server_name))


def routes() -> list[web.RouteDef]:
    """The routes of this module."""
    return [web.get(PATH, accept_page), web.post(PATH, accept)]
