"""The middleware that counts and times every request to the hub, by route and status."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from hub import metrics

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Each (method, route, status)'s histogram child, looked up once: ``labels()`` takes a lock and
# costs as much as the observation itself (about 6 µs each on a loaded 2-core machine). Routes
# are patterns, so the keys stay few.
_children: dict[tuple[str, str, int], Any] = {}
# Any other method a client makes up is counted as "other", so no caller can add labels.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Observe the request's duration under its route's pattern (never its path: the labels
    stay few) and its final status; outermost, so errors turned into responses count as such."""
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        method = request.method if request.method in METHODS else "other"
        key = (method, route, status)
        child = _children.get(key)
        if child is None:
            child = _children[key] = metrics.REQUEST_DURATION.labels(method, route, status)
        child.observe(time.perf_counter() - start)
