"""The proxy's routes: a path prefix and its target, the table that matches a request's path to
the longest prefix, and the routes built from the routes read model. Both proxies (the built-in
one and configurable-http-proxy's adapter) and the route follower share them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

ActivityKey = tuple[UUID, str]
OnActivity = Callable[[dict[ActivityKey, datetime]], Awaitable[None]]


@dataclass(frozen=True)
class Route:
    """A path prefix and where its traffic goes (the target's origin; a path in it is ignored)."""

    prefix: str
    target: str  # http://host:port
    activity_key: ActivityKey | None = None
    address: tuple[str, int] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.target)
        object.__setattr__(self, "address", (parts.hostname or "127.0.0.1", parts.port or 80))


class RouteTable:
    """Routes by longest matching path prefix; ``/`` (the hub) catches everything else."""

    def __init__(self, default: Route) -> None:
        self.default = default
        self._routes: dict[str, Route] = {}

    def replace(self, routes: Iterable[Route]) -> None:
        """Swap in a new set of routes."""
        self._routes = {route.prefix: route for route in routes}

    def routes(self) -> list[Route]:
        """Every route, the default first."""
        return [self.default, *sorted(self._routes.values(), key=lambda r: r.prefix)]

    def match(self, path: str) -> Route:
        """The route of ``path`` (without query): the longest prefix ending in ``/`` that
        covers it (``/user/a`` is covered by ``/user/a/``, as in CHP)."""
        routes = self._routes
        if not routes:
            return self.default
        if not path.endswith("/"):
            found = routes.get(path + "/")
            if found is not None:
                return found
        end = len(path)
        while (end := path.rfind("/", 0, end)) > 0:
            found = routes.get(path[: end + 1])
            if found is not None:
                return found
        return self.default


def routes_from_rows(rows: Iterable[Any]) -> list[Route]:
    """Routes from the routes query (ready servers and services with a URL)."""
    routes = []
    for row in rows:
        key = (row["user_id"], row["server_name"]) if row["user_id"] is not None else None
        routes.append(Route(row["routespec"], row["target"], key))
    return routes
