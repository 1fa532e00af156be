"""The composition root: the only place that builds pools, tasks and servers and wires packages.

Shutdown runs in reverse order of the ``async with`` below: the HTTP site stops first,
then the projection runner, the notifier, and last the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator

from aiohttp import web

import events.catalog  # noqa: F401 - registers the hub's events
from events import notify, store
from hub import (
    access,
    api,
    audit,
    bootstrap,
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
            async with runner.AsyncRunner(event_store, projections):
                yield context.Hub(
                    settings=config, store=event_store, database=config.describe_database()
                )
    finally:
        await pool.close()


def make_app(hub: context.Hub) -> web.Application:
    """The aiohttp application for a running hub."""
    app = web.Application(
        middlewares=[errors.middleware, access.middleware(access.ActivityRecorder())],
        client_max_size=MAX_BODY_BYTES,
    )
    app[context.HUB] = hub
    for module in (api, users_api, groups_api, tokens_api, audit, openapi):
        app.add_routes(module.routes())
    audit.install(app)  # the live feed of /hub/api/events/stream
    return app


async def serve(config: hub_settings.Settings) -> None:
    """Serve until SIGINT or SIGTERM."""
    async with open_hub(config) as hub:
        app_runner = web.AppRunner(make_app(hub), access_log=None)
        await app_runner.setup()
        site = web.TCPSite(app_runner, config.bind_ip, config.port)
        await site.start()
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
