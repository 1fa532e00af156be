"""Inline projections of single-user servers (``servers``) and the proxy's routes (``routes``).

Both fold the server lifecycle events (``events.catalog.servers``) in the append transaction,
so the API reads a server's state, and the proxy its routes, the moment an append returns,
and a hub restarted after a crash finds them as the log left them. A route exists exactly
while its server is ready.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlsplit

from events import models, sql
from events.catalog import server_records
from events.catalog import servers as server_events
from events.catalog import users as user_events
from projections import base

queries = sql.Queries(__package__ or "projections", "servers.sql")

Handler = base.Handler
RunHandler = base.RunHandler


def routespec(user: str, server_name: str = "") -> str:
    """The proxy path of a server: ``/user/<name>/`` or ``/user/<name>/<server>/``."""
    path = f"/user/{quote(user, safe='')}/"
    return path + f"{quote(server_name, safe='')}/" if server_name else path


def route_target(url: str) -> str:
    """Where a route sends traffic: the server URL's origin (the path is kept as requested)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _server(event: models.RecordedEvent) -> Any:
    if not isinstance(event.data, server_events.ServerEvent):
        raise base.ProjectionError(f"{event.type} at {event.position} is not a server event")
    return event.data


async def _spawn_requested(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: server_events.ServerSpawnRequested = _server(event)
    await conn.execute(
        queries["spawn_requested"],
        data.user_id,
        data.server_name,
        data.user,
        json.dumps(data.options),
        event.recorded_at,
        event.position,
        data.token_id,
    )


async def _started(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: server_events.ServerStarted = _server(event)
    await conn.execute(
        queries["started"], data.user_id, data.server_name, data.pid, data.url, event.position
    )


async def _ready(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: server_events.ServerReady = _server(event)
    await conn.execute(queries["ready"], data.user_id, data.server_name, data.url, event.position)


async def _stop_requested(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data = _server(event)
    await conn.execute(
        queries["set_state"], data.user_id, data.server_name, "stopping", event.position
    )


async def _stopped(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data = _server(event)
    await conn.execute(
        queries["ended"], data.user_id, data.server_name, "stopped", None, event.position
    )


async def _failed(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: server_events.ServerFailed = _server(event)
    await conn.execute(
        queries["ended"], data.user_id, data.server_name, "failed", data.reason, event.position
    )


async def _removed(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data = _server(event)
    await conn.execute(queries["remove"], data.user_id, data.server_name)


async def _defined(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: server_records.ServerDefined = _server(event)
    await conn.execute(
        queries["define"],
        data.user_id,
        data.server_name,
        data.user,
        data.display_name,
        json.dumps(data.options),
        event.position,
    )


async def _modified(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: server_records.ServerModified = _server(event)
    await conn.execute(
        queries["modify"],
        data.user_id,
        data.server_name,
        data.display_name,
        json.dumps(data.options),
        event.position,
    )


async def _renamed(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: server_records.ServerRenamed = _server(event)
    await conn.execute(
        queries["rename"],
        data.user_id,
        data.server_name,
        data.new_name,
        data.display_name,
        json.dumps(data.options),
        event.position,
    )


def _renames(events: Sequence[models.RecordedEvent]) -> tuple[list[Any], list[str]]:
    """The user ids and new names of a run of ``user.renamed`` events, in order."""
    ids, names = [], []
    for event in events:
        data = event.data
        assert isinstance(data, user_events.UserRenamed)
        ids.append(data.user_id)
        names.append(data.name)
    return ids, names


async def _users_renamed(conn: sql.Connection, events: Sequence[models.RecordedEvent]) -> None:
    # One statement for a run of renames: a log (or a replay) with many of them, most of users
    # without servers, would otherwise cost a round trip each.
    await conn.execute(queries["rename_users"], *_renames(events))


async def _user_deleted(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data = event.data
    assert isinstance(data, user_events.UserDeleted)
    await conn.execute(queries["forget_user"], data.user_id)


class ServersProjection(base.ByType):
    """``servers``: each server's state, process and options."""

    name = "servers"
    tables = ("servers",)
    handlers: dict[str, Handler] = {  # noqa: RUF012 - read-only after import
        server_events.ServerSpawnRequested.type: _spawn_requested,
        server_events.ServerStarted.type: _started,
        server_events.ServerReady.type: _ready,
        server_events.ServerStopRequested.type: _stop_requested,
        server_events.ServerStopped.type: _stopped,
        server_events.ServerFailed.type: _failed,
        server_events.ServerRemoved.type: _removed,
        server_records.ServerDefined.type: _defined,
        server_records.ServerModified.type: _modified,
        server_records.ServerRenamed.type: _renamed,
        user_events.UserDeleted.type: _user_deleted,
    }
    run_handlers: dict[str, RunHandler] = {  # noqa: RUF012 - read-only after import
        user_events.UserRenamed.type: _users_renamed,
    }


async def _route_add(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: server_events.ServerReady = _server(event)
    await conn.execute(
        queries["route_add"],
        routespec(data.user, data.server_name),
        route_target(data.url),
        data.user_id,
        data.user,
        data.server_name,
        event.position,
    )


async def _route_remove(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data = _server(event)
    await conn.execute(queries["route_remove"], data.user_id, data.server_name)


async def _route_users_renamed(
    conn: sql.Connection, events: Sequence[models.RecordedEvent]
) -> None:
    await conn.execute(queries["route_rename_users"], *_renames(events))


async def _route_user_deleted(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data = event.data
    assert isinstance(data, user_events.UserDeleted)
    await conn.execute(queries["route_forget_user"], data.user_id)


class RoutesProjection(base.ByType):
    """``routes``: the proxy's table, one route per ready server."""

    name = "routes"
    tables = ("routes",)
    handlers: dict[str, Handler] = {  # noqa: RUF012 - read-only after import
        server_events.ServerReady.type: _route_add,
        server_events.ServerStopRequested.type: _route_remove,
        server_events.ServerStopped.type: _route_remove,
        server_events.ServerFailed.type: _route_remove,
        server_events.ServerRemoved.type: _route_remove,
        user_events.UserDeleted.type: _route_user_deleted,
    }
    run_handlers: dict[str, RunHandler] = {  # noqa: RUF012 - read-only after import
        user_events.UserRenamed.type: _route_users_renamed,
    }
