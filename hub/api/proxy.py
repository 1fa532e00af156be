"""``/hub/api/proxy``: JupyterHub's proxy API, scope ``proxy``.

* ``GET``: the routing table as the proxy in front of the hub has it, in JupyterHub's shape
  (``{routespec: {"routespec", "target", "data"}}``, paginated on request);
* ``POST``: re-sync the proxy with the routes read model now (rather than at the next check);
* ``PATCH``: point the hub at another configurable-http-proxy (``api_url``, ``auth_token``).
  The built-in proxy runs inside the hub, so there is nothing to point at: 400.

The running proxy is known only once ``app.run_proxy`` started it, after the application was
built, so the application holds a ``ProxyState`` that ``run_proxy``'s caller fills in.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from hub import errors
from hub.auth import access, scope_table
from hub.context import HUB
from hub.proxy import builtin as proxy
from hub.proxy import chp, table
from hub.web import body, pagination

log = logging.getLogger(__name__)

MAX_PAGE = 1000


@dataclass
class ProxyState:
    """The proxy in front of this hub, once it runs: the built-in one or the CHP adapter,
    and how to push the routes read model to it."""

    builtin: proxy.Proxy | None = None
    chp: chp.ChpProxy | None = None
    refresh: Callable[[], Awaitable[None]] | None = None


PROXY = web.AppKey("proxy_state", ProxyState)


class PatchBody(BaseModel):
    """``PATCH /proxy``: where the new configurable-http-proxy's API is, and its token."""

    model_config = ConfigDict(extra="forbid")

    api_url: str | None = Field(default=None, pattern=r"^https?://[^/\s]+/?$")
    auth_token: str | None = Field(default=None, min_length=1)


def route_model(route: table.Route) -> dict[str, Any]:
    """JupyterHub's model of one route of the built-in proxy."""
    data: dict[str, Any]
    if route.prefix == "/":
        data = {"hub": True}
    elif route.activity_key is not None:
        user, _, server_name = route.prefix.removeprefix("/user/").rstrip("/").partition("/")
        data = {"user": user, "server_name": server_name}
    elif route.prefix.startswith("/services/"):
        data = {"service": route.prefix.removeprefix("/services/").rstrip("/")}
    else:
        data = {}
    return {"routespec": route.prefix, "target": route.target, "data": data}


def chp_route_model(path: str, entry: dict[str, Any]) -> dict[str, Any]:
    """JupyterHub's model of one route of CHP's table (CHP paths have no trailing slash)."""
    routespec = path if path.endswith("/") else path + "/"
    data = {k: v for k, v in entry.items() if k != "target"}
    return {"routespec": routespec, "target": entry.get("target"), "data": data}


def _state(request: web.Request) -> ProxyState:
    state = request.app.get(PROXY)
    if state is None or (state.builtin is None and state.chp is None):
        raise errors.Unavailable("this hub runs no proxy (proxy = none)")
    return state


async def _require(request: web.Request) -> None:
    async with request.app[HUB].store.pool.acquire() as conn:
        await access.require(request, conn, [scope_table.PROXY])


async def get_proxy(request: web.Request) -> web.Response:
    """``GET /proxy``: the routing table, sorted by routespec."""
    await _require(request)
    state = _state(request)
    page = pagination.parse(request, default_limit=MAX_PAGE, max_limit=MAX_PAGE)
    if state.builtin is not None:
        table = {r.prefix: route_model(r) for r in state.builtin.table.routes()}
    else:
        assert state.chp is not None
        try:
            raw = await state.chp.routes()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise errors.HubError.with_status(
                502, f"configurable-http-proxy at {state.chp.api_url} does not answer: {exc}"
            ) from exc
        models = [chp_route_model(path, entry) for path, entry in raw.items()]
        table = {m["routespec"]: m for m in models}
    keys = sorted(table)[page.offset : page.offset + page.limit]
    routes = {key: table[key] for key in keys}
    hub = request.app[HUB]
    return web.json_response(
        pagination.reply(request, page, routes, len(table), hub.settings.public_url)
    )


async def sync_proxy(request: web.Request) -> web.Response:
    """``POST /proxy``: push the routes read model to the proxy now."""
    await _require(request)
    state = _state(request)
    if state.refresh is not None:
        await state.refresh()
    return web.Response(status=200)


async def patch_proxy(request: web.Request) -> web.Response:
    """``PATCH /proxy``: use another CHP (its API URL, its token); checked before it is kept."""
    await _require(request)
    command = await body.parse(request, PatchBody)
    state = _state(request)
    if state.chp is None:
        raise errors.BadRequest(
            "this hub uses its built-in proxy, which runs inside the hub: there is no proxy"
            " to point it at (PATCH /proxy is for configurable-http-proxy, proxy = chp)"
        )
    adapter = state.chp
    before = (adapter.api_url, adapter.auth_token)
    if command.api_url is not None:
        adapter.api_url = command.api_url.rstrip("/")
    if command.auth_token is not None:
        adapter.auth_token = command.auth_token
    try:
        await adapter.routes()
    except (aiohttp.ClientError, TimeoutError) as exc:
        adapter.api_url, adapter.auth_token = before
        raise errors.BadRequest(
            f"the proxy at {command.api_url or before[0]} does not accept the hub: {exc};"
            " the hub keeps its current proxy"
        ) from exc
    log.info("the hub now uses configurable-http-proxy at %s", adapter.api_url)
    if state.refresh is not None:
        await state.refresh()
    return web.Response(status=200)


def routes() -> list[web.RouteDef]:
    """The routes of this module."""
    return [
        web.get("/hub/api/proxy", get_proxy),
        web.post("/hub/api/proxy", sync_proxy),
        web.patch("/hub/api/proxy", patch_proxy),
    ]
