"""``GET /hub/metrics``: the hub's Prometheus metrics, to holders of ``read:metrics``."""

from __future__ import annotations

import asyncio

from aiohttp import web

from hub import metrics
from hub.auth import access, scope_table
from hub.context import HUB


async def serve_metrics(request: web.Request) -> web.Response:
    """The figures in Prometheus' text format (``read:metrics``: admins have it; give a
    monitoring service a role with it)."""
    hub = request.app[HUB]
    async with hub.store.pool.acquire() as conn:
        await access.require(request, conn, [scope_table.READ_METRICS])
    metrics.COLLAB_ROOMS_OPEN.set(len(hub.rooms) if hub.rooms is not None else 0)
    if hub.read_cache is not None:
        metrics.READ_CACHE_LOOKUPS.labels("hit").set(hub.read_cache.hits)
        metrics.READ_CACHE_LOOKUPS.labels("miss").set(hub.read_cache.misses)
    # The process collector reads /proc: a thread, not the event loop.
    body = await asyncio.to_thread(metrics.render)
    return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})


def routes() -> list[web.RouteDef]:
    """The routes of this module."""
    return [web.get("/hub/metrics", serve_metrics)]
