"""The composition root: the only place that builds pools, tasks and servers and wires packages.

Shutdown runs in reverse order of the ``async with`` below: the HTTP site stops first,
then the projection runner, the notifier, and last the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator

from aiohttp import web

import events.catalog  # noqa: F401 - registers the hub's events
from collab import limits as collab_limits
from collab import persistence as collab_persistence
from collab import rooms as collab_rooms
from collab import server as collab_server
from events import notify, store
from hub import (
    access,
    api,
    audit,
    bootstrap,
    collab_access,
    context,
    database,
    errors,
    groups_api,
    openapi,
    tokens_api,
    users_api,
)
from hub import settings as hub_settings
from projections import base, catalog, runner

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024


@contextlib.asynccontextmanager
async def open_hub(
    config: hub_settings.Settings, *, serving: bool = True
) -> AsyncIterator[context.Hub]:
    """Start the database (embedded when none is configured), migrate, and run the hub's parts.

    ``serving=False`` is for one-shot CLI commands: it neither applies the configuration
    (a command run without the server's configuration file must not undo it) nor runs the
    asynchronous projections.
    """
    dsn = await asyncio.to_thread(database.resolve_dsn, config)
    await database.migrate(dsn)
    pool = await database.create_pool(dsn, min_size=config.db_pool_min, max_size=config.db_pool_max)
    try:
        async with notify.Notifier(dsn) as notifier:
            event_store = store.EventStore(
                pool,
                inline=base.Inline(catalog.ALL),
                notifier=notifier,
                max_event_bytes=config.max_event_bytes,
            )
            projections = catalog.ALL if serving else ()
            if serving:
                await bootstrap.reconcile(event_store, config)
            async with (
                runner.AsyncRunner(event_store, projections),
                open_rooms(config, event_store, dsn, serving=serving) as rooms,
            ):
                yield context.Hub(
                    settings=config,
                    store=event_store,
                    database=config.describe_database(),
                    rooms=rooms,
                )
    finally:
        await pool.close()


def collab_limits_of(config: hub_settings.Settings) -> collab_limits.Limits:
    """collab's limits, from the hub's settings."""
    return collab_limits.Limits(
        max_message_bytes=config.collab_max_message_bytes,
        rate_per_s=config.collab_rate_per_s,
        rate_burst=config.collab_rate_burst,
        send_buffer_bytes=config.collab_send_buffer_bytes,
        room_grace_s=config.collab_room_grace_s,
        compact_after_updates=config.collab_compact_after_updates,
    )


@contextlib.asynccontextmanager
async def open_rooms(
    config: hub_settings.Settings, event_store: store.EventStore, dsn: str | None, *, serving: bool
) -> AsyncIterator[collab_rooms.Rooms | None]:
    """The collaboration rooms of a serving hub (none for one-shot commands)."""
    if not serving:
        yield None
        return
    rooms = collab_rooms.Rooms(
        collab_persistence.RoomStore(event_store, durable_updates=config.collab_durable_updates),
        collab_limits_of(config),
        dsn=dsn,
    )
    async with rooms:
        yield rooms


def make_app(hub: context.Hub) -> web.Application:
    """The aiohttp application for a running hub."""
    app = web.Application(
        middlewares=[errors.middleware, access.middleware(access.ActivityRecorder())],
        client_max_size=MAX_BODY_BYTES,
    )
    app[context.HUB] = hub
    for module in (api, users_api, groups_api, tokens_api, audit, openapi):
        app.add_routes(module.routes())
    if hub.rooms is not None:
        gatekeeper = collab_access.TokenGatekeeper(hub.store)
        collab_server.Endpoint(hub.rooms, gatekeeper).install(app)
    return app


async def serve(config: hub_settings.Settings) -> None:
    """Serve until SIGINT or SIGTERM."""
    async with open_hub(config) as hub:
        app_runner = web.AppRunner(make_app(hub), access_log=None)
        await app_runner.setup()
        site = web.TCPSite(app_runner, config.bind_ip, config.port)
        await site.start()
        # What start-up made (modules, models, schemas, the app) lives for good: keep it out
        # of the cyclic garbage collector's full passes, which otherwise rescan it all and
        # stall the event loop for tens of milliseconds (measured here; room broadcasts
        # notice first).
        gc.freeze()
        try:
            host, port = app_runner.addresses[0][:2]
            print(f"chronohub serving at http://{host}:{port}/hub/", flush=True)
            print(f"database: {hub.database}", flush=True)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            log.info("shutting down")
        finally:
            await app_runner.cleanup()
