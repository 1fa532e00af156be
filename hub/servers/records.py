"""Named servers without a process: define, modify and rename (JupyterHub 6's PUT and PATCH);
and servers' activity, as the proxy saw it (``record_activity``).

Each takes the server's advisory lock (``lock_server``) in its own transaction, checks the
read model and appends one event; none touches a process, so none needs the manager's
per-server locks or live state.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

from events import models, sql, store
from events.catalog import server_records
from events.catalog import servers as server_events
from hub.servers import config, rules, spawner

queries = sql.Queries(__package__ or "hub.servers", "servers.sql")


async def _stopped(
    conn: sql.Connection, user_id: UUID, user: str, server_name: str, doing: str
) -> Any:
    """The row of a server that exists and is not running, for ``doing`` it (an edit)."""
    row = await conn.fetchrow(queries["server"], user_id, server_name)
    if row is None:
        raise rules.ServerNotFound(f"{user} has no server named {server_name!r}")
    if row["state"] in rules.ACTIVE:
        raise spawner.PolicyError(
            f"{rules.label(user, server_name)} is running; stop it before {doing} it", status=409
        )
    return row


async def define(
    event_store: store.EventStore,
    settings: config.Settings,
    user_id: UUID,
    user: str,
    server_name: str,
    display_name: str,
    options: dict[str, Any],
    meta: models.Metadata,
) -> None:
    """Create a stopped named server (JupyterHub 6's PUT); ``PolicyError`` 409 if it exists."""
    stream = server_events.stream_id(user_id, server_name)
    async with event_store.session() as session:
        conn = session.conn
        await conn.execute(queries["lock_server"], stream)
        if not settings.allow_named:
            raise spawner.PolicyError("Named servers are not enabled.")
        if await conn.fetchrow(queries["server"], user_id, server_name) is not None:
            raise spawner.PolicyError(f"Server {user}/{server_name} already exists", status=409)
        limit = settings.named_limit
        if limit and await conn.fetchval(queries["named_servers"], user_id) >= limit:
            raise spawner.PolicyError(
                f"User {user} already has the maximum of {limit} named servers."
            )
        await session.append(
            stream,
            [
                server_records.ServerDefined(
                    user_id=user_id,
                    user=user,
                    server_name=server_name,
                    display_name=display_name,
                    options=options,
                )
            ],
            metadata=meta,
        )


async def modify(
    event_store: store.EventStore,
    user_id: UUID,
    user: str,
    server_name: str,
    display_name: str | None,
    options: dict[str, Any] | None,
    meta: models.Metadata,
) -> None:
    """Change a stopped server's display name or options (JupyterHub 6's PATCH)."""
    stream = server_events.stream_id(user_id, server_name)
    async with event_store.session() as session:
        conn = session.conn
        await conn.execute(queries["lock_server"], stream)
        row = await _stopped(conn, user_id, user, server_name, "changing")
        await session.append(
            stream,
            [
                server_records.ServerModified(
                    user_id=user_id,
                    user=user,
                    server_name=server_name,
                    display_name=row["display_name"] if display_name is None else display_name,
                    options=json.loads(row["options"]) if options is None else options,
                )
            ],
            metadata=meta,
        )


async def rename(
    event_store: store.EventStore,
    settings: config.Settings,
    user_id: UUID,
    user: str,
    server_name: str,
    new_name: str,
    display_name: str | None,
    options: dict[str, Any] | None,
    meta: models.Metadata,
) -> None:
    """Rename a stopped server (JupyterHub 6's PATCH with ``name``). Its display name
    becomes ``display_name``, or the new name; renaming the default server makes a named
    one, so the named-server limit applies then."""
    streams = sorted(server_events.stream_id(user_id, name) for name in (server_name, new_name))
    async with event_store.session() as session:
        conn = session.conn
        for stream in streams:  # in a fixed order: two renames never wait on each other
            await conn.execute(queries["lock_server"], stream)
        if not settings.allow_named:
            raise spawner.PolicyError("Named servers are not enabled.")
        row = await _stopped(conn, user_id, user, server_name, "renaming")
        if await conn.fetchrow(queries["server"], user_id, new_name) is not None:
            raise spawner.PolicyError(f"Server {user}/{new_name} already exists", status=409)
        limit = settings.named_limit
        if (  # the default server becomes a named one
            not server_name
            and limit
            and await conn.fetchval(queries["named_servers"], user_id) >= limit
        ):
            raise spawner.PolicyError(
                f"User {user} already has the maximum of {limit} named servers."
            )
        await session.append(
            server_events.stream_id(user_id, server_name),
            [
                server_records.ServerRenamed(
                    user_id=user_id,
                    user=user,
                    server_name=server_name,
                    new_name=new_name,
                    display_name=new_name if display_name is None else display_name,
                    options=json.loads(row["options"]) if options is None else options,
                )
            ],
            metadata=meta,
        )
        await conn.execute(queries["server_activity_rename"], user_id, server_name, new_name)


async def record_activity(
    event_store: store.EventStore, seen: dict[tuple[UUID, str], datetime]
) -> None:
    """Write proxy-observed activity of servers (and their users), forward only."""
    if not seen:
        return
    keys = list(seen)
    async with event_store.pool.acquire() as conn, conn.transaction():
        await conn.execute(
            queries["server_activity_touch"],
            [k[0] for k in keys],
            [k[1] for k in keys],
            [seen[k] for k in keys],
        )
        latest: dict[UUID, datetime] = {}
        for (user_id, _), stamp in seen.items():
            latest[user_id] = max(stamp, latest.get(user_id, stamp))
        await conn.execute(queries["user_activity_touch"], list(latest), list(latest.values()))


async def spawner_state(event_store: store.EventStore, user_id: UUID, server_name: str) -> Any:
    """A JupyterHub spawner's state as its server's last ``server.started`` recorded it."""
    stream = server_events.stream_id(user_id, server_name)
    async with event_store.pool.acquire() as conn:
        state = await conn.fetchval(queries["spawner_state"], stream)
    return json.loads(state) if state else {}
