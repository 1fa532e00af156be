"""``/hub/sessions/{id}``: a shared execution session's notebook in the browser, edited together.

The page is a shell: the notebook itself is drawn by the front-end bundle (``frontend/``,
``notebook.js``), which joins the session's room at ``/hub/collab/<room>`` with the login cookie
(no token in any URL) and runs cells through the room's document. What the page tells the
script (room, user, whether they may write, the XSRF token for interrupt and restart) is a JSON
data block, not script. Who may open it is the sessions API's rule (``collab_api.caller_level``):
``write`` edits and runs, ``read`` watches; anyone else gets a 404 page, as the API answers.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

from aiohttp import web

from hub.api import collab as collab_api
from hub.auth import access, identity
from hub.context import HUB
from hub.web import assets

# The bundle's script and connections to this origin only; CodeMirror and the remote cursors
# set style attributes (hence 'unsafe-inline' for styles); images of outputs come as data: URLs.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline';"
    " img-src 'self' data:; connect-src 'self'; font-src 'self'; form-action 'self';"
    " frame-ancestors 'none'; base-uri 'none'"
)


def _page(request: web.Request, template: str, **context: Any) -> web.Response:
    return identity.form_page(request, template, csp=CSP, **context)


def _not_found(request: web.Request, session_id: str) -> web.Response:
    return identity.error_page(request, 404, f"No such session: {session_id}", csp=CSP)


async def session_page(request: web.Request) -> web.StreamResponse:
    """``GET /hub/sessions/{session_id}``: the notebook page, or a 404 page."""
    row = identity.session_user(request)
    if row is None:
        raise web.HTTPFound("/hub/login?next=" + quote(request.path_qs, safe=""))
    raw_id = request.match_info["session_id"]
    manager = request.app.get(collab_api.SESSIONS)
    try:
        session_id = uuid.UUID(raw_id)
    except ValueError:
        return _not_found(request, raw_id)
    bound = manager.get(session_id) if manager is not None else None
    if bound is None:
        return _not_found(request, raw_id)
    caller = access.caller_of(request)
    async with request.app[HUB].store.pool.acquire() as conn:
        level = await collab_api.caller_level(conn, caller, bound.session.room, bound.owner)
    if level not in ("read", "write"):
        return _not_found(request, raw_id)
    session = collab_api.render(request, bound)
    script = assets.url("notebook.js")
    return _page(
        request,
        "session.html",
        user=row["name"],
        session=session,
        script=script,
        preloads=assets.preloads("notebook.js"),
        build_hint=assets.BUILD_HINT,
        can_write=level == "write",
        config={
            "session_id": session.id,
            "room": session.room,
            "user": row["name"],
            "can_write": level == "write",
            "api": f"{collab_api.PREFIX}/{session.id}",
            "ws_path": "/hub/collab",
        },
    )


def routes() -> list[web.RouteDef]:
    """The routes of this module."""
    return [web.get("/hub/sessions/{session_id}", session_page)]
