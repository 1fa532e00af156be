"""The root of the REST API and the health check."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from hub import errors, version
from hub.context import HUB


async def root(request: web.Request) -> web.Response:
    """``GET /hub/api/``: the JupyterHub API version clients switch features on."""
    return web.json_response({"version": version.JUPYTERHUB_API})


async def health(request: web.Request) -> web.Response:
    """``GET /hub/health``: 200 when the hub and its database answer, 503 otherwise."""
    hub = request.app[HUB]
    try:
        async with hub.store.pool.acquire(timeout=5) as conn:
            await conn.fetchval("SELECT 1")
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise errors.Unavailable(f"the database does not answer: {exc}") from exc
    return web.json_response({"status": "ok", "database": "ok"})


def routes() -> list[web.RouteDef]:
    """The routes of this module."""
    return [
        web.get("/hub/api", root),
        web.get("/hub/api/", root),
        web.get("/hub/health", health),
    ]
