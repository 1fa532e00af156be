"""The composition root: the only place that builds pools, tasks and servers and wires packages.

Shutdown runs in reverse order of the ``async with`` below: the proxy and the HTTP site stop
first, then the server manager (stopping servers unless ``cleanup_servers`` is off or another hub
process is live), the shared
execution sessions (their kernels), the collab rooms, the projection runner, the notifier, and
last the pool.

A little over 600 lines, on purpose: being the one place that builds infrastructure, it holds
each part's wiring (and only that: what a part does lives in its own package).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from aiohttp import web

import events.catalog  # noqa: F401 - registers the hub's events
from collab import limits as collab_limits
from collab import persistence as collab_persistence
from collab import rooms as collab_rooms
from collab import server as collab_server
from collab import session_log as collab_session_log
from collab import sessions as collab_sessions
from events import errors as event_errors
from events import notify, store
from hub import bootstrap, context, data_dir, database, database_watch, errors, metrics, startup
from hub import ports as hub_ports
from hub import settings as hub_settings
from hub.api import auth as auth_api
from hub.api import collab as collab_api
from hub.api import collab_forward, collab_lease, openapi, service_reports
from hub.api import groups as groups_api
from hub.api import metrics as metrics_api
from hub.api import project_content as project_content_api
from hub.api import project_sessions as project_sessions_api
from hub.api import projects as projects_api
from hub.api import proxy as proxy_api
from hub.api import root as api
from hub.api import servers as servers_api
from hub.api import services as services_api
from hub.api import share_codes as share_codes_api
from hub.api import shares as shares_api
from hub.api import tokens as tokens_api
from hub.api import users as users_api
from hub.audit import history as audit
from hub.audit import webhooks
from hub.auth import (
    access,
    collab_access,
    identity,
    login,
    login_cookies,
    token_acks,
    token_cache,
)
from hub.auth.authenticators import base as authenticator_base
from hub.auth.oauth import provider as oauth_provider
from hub.pages import admin as admin_page
from hub.pages import events as events_page
from hub.pages import login as login_pages
from hub.pages import projects as project_pages
from hub.pages import sessions as session_pages
from hub.pages import shares as shares_page
from hub.pages import token as token_page
from hub.pages import user as user_pages
from hub.projects import cleanup, git_http, importer, remote, storage
from hub.projects import sessions as project_sessions
from hub.proxy import builtin as builtin_proxy
from hub.proxy import chp as chp_proxy
from hub.proxy import routes, table
from hub.reads import cache as reads_cache
from hub.servers import config as servers_config
from hub.servers import hub_processes, isolation, spawner, watch_others
from hub.servers import manager as servers
from hub.services import environment as service_environment
from hub.services import supervisor as service_supervisor
from hub.web import html, idempotency, request_metrics
from projections import base, catalog, runner, snapshots

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
# A serving hub's snapshots are built by this child, which ends with the hub (--parent-pid).
SNAPSHOT_COMMAND = (sys.executable, "-m", "hub.cli", "projections", "snapshot")
GC_YOUNG_THRESHOLD = 10_000  # allocations between young collections (CPython's default: 700)


@contextlib.asynccontextmanager
async def open_hub(
    config: hub_settings.Settings,
    *,
    serving: bool = True,
    oauth: spawner.OAuthClients | None = None,
    hub_url: str | None = None,
) -> AsyncIterator[context.Hub]:
    """Start the database (embedded when none is configured), migrate, and run the hub's parts.

    ``serving=False`` is for one-shot CLI commands: it neither applies the configuration
    (a command run without the server's configuration file must not undo it) nor runs the
    asynchronous projections, nor manages servers. ``oauth`` is where spawned servers' OAuth
    clients are registered: by default this hub's own OAuth provider. ``hub_url`` is where
    servers reach the hub's API (by default ``hub_ip``:``hub_port``).
    """
    code = isolation.Isolation.from_settings(config)
    # Checked first: a server command that cannot run is told before anything is written.
    adapted = servers_config.jupyterhub_spawner(config) if serving else None
    command = servers_config.spawn_command(config, code) if serving and adapted is None else ()
    if serving and (config.database_url or config.uses_pg_environment()):
        # A serving hub keeps its cookie secret and the servers' logs there; with no database
        # configured, the embedded one makes (or checks) it as it starts.
        await asyncio.to_thread(data_dir.prepare, config.data_dir)
    located = await asyncio.to_thread(database.locate, config)
    dsn = located.dsn
    await database.migrate(dsn, described=config.describe_database())
    # A serving hub bounds every wait on its database (503 rather than a hang); one-shot
    # commands (a rebuild, an export) may run statements as long as they need.
    pool = await database.create_pool(
        dsn,
        min_size=config.db_pool_min,
        max_size=config.db_pool_max,
        acquire_timeout=config.db_acquire_timeout if serving else None,
        statement_timeout=config.db_statement_timeout if serving else None,
    )
    # A serving hub remembers what tokens resolve to, and the users list's pages, while
    # notifications keep them true.
    tokens = token_cache.TokenCache(dsn) if serving else None
    answers = None
    if tokens is not None:
        answers = reads_cache.ReadCache(
            tokens.serving,
            max_entries=config.read_cache_entries,
            max_age_s=config.read_cache_max_age_s,
        )
        tokens.followers.append(answers.invalidate)
    try:
        async with (
            notify.Notifier(dsn) as notifier,
            tokens if tokens is not None else contextlib.nullcontext(),
            database_watch.DatabaseWatch(
                pool, embedded=located.embedded if serving else None,
                probe_timeout=min(config.db_acquire_timeout, config.db_statement_timeout),
                probing=serving,
                dsn=dsn,
            ) as watch,
        ):  # fmt: skip
            event_store = store.EventStore(
                pool,
                inline=base.Inline(catalog.ALL),
                notifier=notifier,
                max_event_bytes=config.max_event_bytes,
                on_append=appended(tokens, answers),
            )
            projections = catalog.ALL if serving else ()
            if serving:
                await bootstrap.reconcile(event_store, config)
            async with (
                contextlib.aclosing(event_store),  # exits last: no append outlives the rest
                runner.AsyncRunner(event_store, projections),
                take_snapshots(config, dsn, serving=serving),
                open_rooms(config, event_store, dsn, serving=serving) as rooms,
                open_sessions(config, event_store, rooms, code) as sessions,
            ):
                if not serving:
                    yield context.Hub(
                        settings=config, store=event_store, database=config.describe_database()
                    )
                    return
                manager = servers.ServerManager(
                    event_store,
                    servers.settings_from(config, code, command, hub_url),
                    spawner_=adapted,
                    oauth=oauth,
                )
                await manager.start()
                manager.hubs = hubs = hub_processes.Registry(pool, config.process_lease_s)
                try:
                    await hubs.join()
                    await manager.readopt()
                    # Other processes' servers are watched here too (one may die).
                    async with watch_others.OtherServers(event_store.pool, manager):
                        yield context.Hub(
                            settings=config,
                            store=event_store,
                            database=config.describe_database(),
                            database_watch=watch,
                            servers=manager,
                            isolation=code,
                            rooms=rooms,
                            collab_sessions=sessions,
                            token_cache=tokens,
                            read_cache=answers,
                        )
                finally:
                    # Users' servers are stopped only by the last live process: stopping one
                    # of several behind a load balancer leaves them to the others.
                    last = await hubs.leave()
                    if last and config.cleanup_servers:  # those started elsewhere too
                        with contextlib.suppress(event_errors.DatabaseUnavailable):
                            await watch_others.OtherServers(pool, manager).watch_ready()
                    await manager.close(
                        stop_servers=config.cleanup_servers and last, watched_too=last
                    )
    finally:
        await pool.close()


def appended(
    tokens: token_cache.TokenCache | None, answers: reads_cache.ReadCache | None = None
) -> Callable[[Sequence[str]], None]:
    """The event store's append hook: count the events, and tell the token and read caches
    (the request that appended then waits for the other processes' acknowledgements)."""
    if tokens is None:
        return metrics.count_appended

    def hook(types: Sequence[str]) -> None:
        metrics.count_appended(types)
        tokens.on_append(types)
        if answers is not None and answers.changed_by(types):
            token_acks.mark_committed(token_acks.READS)

    return hook


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
async def take_snapshots(
    config: hub_settings.Settings, dsn: str | None, *, serving: bool
) -> AsyncIterator[snapshots.Snapshotter | None]:
    """A serving hub's snapshots of the read models for time travel, every
    ``snapshot_every_events`` positions (none for one-shot commands, or when 0)."""
    if not serving or not config.snapshot_every_events:
        yield None
        return
    # A small pool of its own for the checks (the requests' pool bounds every statement).
    pool = await database.create_pool(dsn, min_size=1, max_size=1)
    try:
        async with snapshots.Snapshotter(
            store.EventStore(pool, group_commit_lanes=0),
            catalog.ALL,
            every=config.snapshot_every_events,
            keep=config.snapshot_keep,
            # Built by a child process: replaying the log is CPU-bound work that would stall
            # this event loop. It reads the same settings (environment and TOML file), on the
            # database this hub uses, and dies with this process (even a SIGKILL of it).
            command=[*SNAPSHOT_COMMAND, "--parent-pid", str(os.getpid())],
            env=snapshot_env(config, dsn),
        ) as taker:
            yield taker
    finally:
        await pool.close()


def snapshot_env(config: hub_settings.Settings, dsn: str | None) -> dict[str, str]:
    """The environment of a child ``chronohub projections snapshot``: this process's, plus
    the settings it must share with this hub whatever gave them (the command line, say)."""
    env = {
        **os.environ,
        hub_settings.CONFIG_ENV: str(hub_settings.config_path()),
        "CHRONOHUB_SNAPSHOT_KEEP": str(config.snapshot_keep),
    }
    if dsn is not None:
        env["CHRONOHUB_DATABASE_URL"] = dsn
    return env


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


@contextlib.asynccontextmanager
async def open_sessions(
    config: hub_settings.Settings,
    event_store: store.EventStore,
    rooms: collab_rooms.Rooms | None,
    code: isolation.Isolation,
) -> AsyncIterator[collab_sessions.SessionManager | None]:
    """Shared execution sessions on the hub's rooms, all shut down when the hub stops; their
    kernels run as their creators' accounts (``code``)."""
    if rooms is None:
        yield None
        return
    async with collab_sessions.SessionManager(
        rooms,
        collab_session_log.StoreRecorder(event_store),
        collab_api.may_write(event_store, rooms),
        kernel_account=collab_api.kernel_account(event_store, code),
        grace_period=config.collab_session_grace_s,
        kernel_startup_timeout=config.collab_kernel_startup_timeout_s,
    ) as manager:
        yield manager


def make_app(hub: context.Hub) -> web.Application:
    """The aiohttp application for a running hub."""
    activity = access.ActivityRecorder()
    app = web.Application(
        middlewares=[request_metrics.middleware, errors.middleware, access.middleware(activity)],
        client_max_size=MAX_BODY_BYTES,
    )
    app[context.HUB] = hub
    app[errors.ERROR_PAGE] = html.error_page
    if hub.database_watch is not None:
        app[database_watch.WATCH] = hub.database_watch
    app[access.ACTIVITY] = activity
    app[tokens_api.OWNERS] = tokens_api.owners(hub.store)
    if hub.servers is not None:
        app[servers_api.SERVER_APP] = hub.servers
    if hub.collab_sessions is not None:
        app[collab_api.SESSIONS] = hub.collab_sessions
    app[collab_forward.OWNERSHIP] = collab_forward.Ownership()  # its origin set once serving
    if hub.collab_sessions is not None:  # renewed once serving, stopped before forgotten
        leases = collab_lease.Leases(
            hub.store.pool, hub.collab_sessions, hub.settings.collab_session_lease_s
        )
        app[collab_lease.LEASES] = leases
        app.on_cleanup.append(leases.stop)
    app.on_cleanup.append(collab_forward.forget_owned)
    for module in (
        api,
        metrics_api,
        users_api,
        groups_api,
        tokens_api,
        audit,
        openapi,
        servers_api,
    ):
        app.add_routes(module.routes())
    app[services_api.SERVICES] = services_api.ServicesState()  # filled in by run_services
    app.add_routes(services_api.routes())
    app.add_routes(service_reports.routes())
    for module in (shares_api, share_codes_api):  # sharing servers
        app.add_routes(module.routes())
    app[proxy_api.PROXY] = proxy_api.ProxyState()  # filled in by run_proxy
    app.add_routes(proxy_api.routes())
    audit.install(app)  # the live feed of /hub/api/events/stream
    webhooks.install(app)  # services' webhooks, delivered from their checkpoints
    login.install(app, hub)  # the login cookie
    # REST writes retried with an Idempotency-Key: after the callers are known (both ways)
    app.middlewares.append(
        idempotency.middleware(
            access.idempotency_owner,
            hub.settings.idempotency_key_lifetime_s,
            login_cookies.load_secret(hub.settings),
        )
    )
    adopt_authenticator(hub, app[identity.AUTH].authenticator)
    if isinstance(checking := app[identity.AUTH].authenticator, authenticator_base.SessionChecking):
        app[access.BLOCKED] = checking.blocked  # a JupyterHub class's blocked_users
    # the pages and APIs that use it: login, OAuth provider, password, signups, the token page
    # and the admin pages, and the pages' static files (stylesheets, favicon)
    for module in (login_pages, oauth_provider, auth_api, token_page, admin_page, shares_page):
        app.add_routes(module.routes())
    events_page.install(app)  # the audit timeline and the hub at a moment
    html.install(app)
    app.add_routes(user_pages.routes())  # /user/... without a route, start/stop pages
    if hub.rooms is not None:
        cookie_auth = collab_access.cookie_caller(hub.store, app[identity.AUTH].cookies)
        # a room opened on a project's notebook follows the project's roles
        gatekeeper = collab_access.TokenGatekeeper(
            hub.store,
            cookie_auth,
            project_rooms=project_sessions.room_level,
            blocked=app.get(access.BLOCKED),
        )
        collab_server.Endpoint(hub.rooms, gatekeeper).install(app)
    app.add_routes(collab_api.routes())  # shared execution sessions (503 without rooms)
    app.add_routes(session_pages.routes())  # /hub/sessions/{id}: a session's notebook page
    install_projects(app, hub.settings, hub.store)
    return app


def adopt_authenticator(hub: context.Hub, authenticator: object) -> None:
    """With a JupyterHub spawner class and a JupyterHub authenticator class, the
    authenticator's ``pre_spawn_start`` (and the auth_state the spawner's ``auth_state_hook``
    gets) runs before each start, as in JupyterHub."""
    if hub.servers is None or hub.settings.spawner_class is None:
        return
    # Imported only when used, as in servers_config.jupyterhub_spawner
    from hub.auth.authenticators import jupyterhub_adapter as jupyterhub_auth
    from hub.servers import jupyterhub_adapter

    adapter = hub.servers.spawner
    if isinstance(adapter, jupyterhub_adapter.JupyterHubSpawner) and isinstance(
        authenticator, jupyterhub_auth.JupyterHubAuthenticator
    ):
        adapter.pre_spawn = authenticator.pre_spawn_start


def install_projects(
    app: web.Application, config: hub_settings.Settings, event_store: store.EventStore
) -> None:
    """Git projects: their REST API, git's smart HTTP protocol, imports from the internet,
    and the thread pool that works on their repositories (running while the application does)."""
    place = storage.Storage(
        workers=storage.Workers(config.project_git_threads),
        repositories=storage.Repositories(
            config.data_dir / "projects", max_push_bytes=config.project_max_push_bytes
        ),
        io_timeout_s=config.project_git_timeout_s,
        native=storage.native_git(
            config.project_git_native,
            config.data_dir / "projects",
            slots=config.project_git_threads,
            timeout_s=config.project_git_timeout_s,
        ),
    )
    app[storage.STORAGE] = place
    app[importer.IMPORTER] = importer.Importer(
        place,
        event_store,
        remote.Policy(
            allow_private=config.project_import_allow_private,
            allowed_networks=tuple(config.project_import_allowed_networks),
            max_bytes=config.project_import_max_bytes,
            timeout_s=config.project_import_timeout_s,
        ),
    )
    app.cleanup_ctx.append(place.running)
    # after the pool starts: repositories no project needs, and old scratch, removed
    app.cleanup_ctx.append(cleanup.Sweep(place, event_store).at_start)
    app.add_routes(projects_api.routes())
    app.add_routes(project_content_api.routes())  # browsing without a clone
    app.add_routes(project_sessions_api.routes())  # sessions on a project's notebook
    app.add_routes(project_pages.routes())  # /hub/projects: the same in the browser
    # Bodies of git requests are streamed, never read whole: client_max_size does not apply.
    app.add_routes(git_http.routes())


@dataclass(frozen=True)
class RunningProxy:
    """The proxy in front of the hub: its public URL and the part that runs it."""

    url: str
    builtin: builtin_proxy.Proxy | None = None
    chp: chp_proxy.ChpProxy | None = None


@contextlib.asynccontextmanager
async def run_proxy(
    hub: context.Hub,
    hub_target: str,
    state: proxy_api.ProxyState | None = None,
    *,
    sock: socket.socket | None = None,
) -> AsyncIterator[RunningProxy | None]:
    """Run the configured proxy on the public address (``ip``:``port``), in front of the hub
    at ``hub_target`` (None: no proxy).

    Its routing table follows the routes read model (``hub.proxy.routes``); the traffic it sees
    becomes server activity. ``state`` (the application's) is told about it, for the
    ``/hub/api/proxy`` endpoints. ``sock``: the built-in proxy's socket, already bound.
    """
    config, manager = hub.settings, hub.servers
    if config.proxy == "none" or manager is None:
        yield None
        return
    sinks: list[routes.Sink] = []
    async with contextlib.AsyncExitStack() as stack:
        running: RunningProxy
        if config.proxy == "builtin":
            proxy = builtin_proxy.Proxy(hub_target, on_activity=manager.record_activity)
            stack.push_async_callback(proxy.close)
            host, port = await proxy.start(config.ip, config.port, sock=sock)
            running = RunningProxy(startup.url(host, port), builtin=proxy)

            async def to_builtin(table: list[table.Route]) -> None:
                proxy.set_routes(table)

            sinks.append(to_builtin)
        else:
            token = config.chp_auth_token.get_secret_value() if config.chp_auth_token else None
            if config.chp_api_url is None:  # one we start: it would only exit with a code
                startup.check_free(config.ip, config.port, "public")
            chp = chp_proxy.ChpProxy(
                command=config.chp_command,
                api_url=config.chp_api_url,
                auth_token=token,
                ip=config.ip,
                port=config.port,
                hub_target=hub_target,
                on_activity=manager.record_activity,
                ports=manager.settings.ports,  # the hub's one port picker (port_range)
            )
            try:
                await stack.enter_async_context(chp)
            except hub_ports.PortsExhausted as exc:  # no port for its API: say it in one line
                raise startup.StartupError(f"configurable-http-proxy's API: {exc}") from exc
            # An external CHP listens wherever it was told to: ip:port is taken to be that
            # place, as JupyterHub takes bind_url to be its external proxy's.
            running = RunningProxy(startup.url(config.ip, config.port), chp=chp)

            async def to_chp(table: list[table.Route]) -> None:
                await chp.sync(table)

            sinks.append(to_chp)
        # Woken by the event log too: a server another hub process spawned is routed here
        # as soon as it is ready there.
        follower = routes.RouteFollower(
            hub.store.pool, sinks, config.proxy_check_interval, wakeup=hub.store.wakeup
        )
        await follower.start()
        stack.push_async_callback(follower.stop)
        manager.on_routes_changed(follower.refresh)
        stack.callback(manager.forget_routes_listener, follower.refresh)
        if state is not None:
            state.builtin, state.chp, state.refresh = running.builtin, running.chp, follower.refresh
            stack.callback(_forget_proxy, state)
        yield running


@contextlib.asynccontextmanager
async def run_services(
    hub: context.Hub,
    api_url: str,
    proxy_state: proxy_api.ProxyState,
    state: services_api.ServicesState,
) -> AsyncIterator[service_supervisor.Supervisor]:
    """Run the configured managed services (``hub.services.supervisor``) once the hub and its
    proxy serve, so that a service can use the API (and be reached) from its first moment;
    they are stopped first at shutdown. The hub never waits for them to start: one that cannot
    start, or dies, is the supervisor's to report and restart, never a reason to stop."""

    async def routes_changed() -> None:
        if proxy_state.refresh is not None:
            await proxy_state.refresh()

    supervisor = service_supervisor.Supervisor(
        hub.store,
        hub.settings,
        service_environment.Addresses(api_url=api_url, public_url=hub.settings.public_url),
        on_routes_changed=routes_changed,
        # the hub's one port picker (port_range), the server manager's
        ports=hub.servers.settings.ports if hub.servers is not None else None,
    )
    async with supervisor:
        state.supervisor = supervisor
        try:
            yield supervisor
        finally:
            state.supervisor = None


def _forget_proxy(state: proxy_api.ProxyState) -> None:
    state.builtin, state.chp, state.refresh = None, None, None


async def serve(config: hub_settings.Settings) -> None:
    """Serve until SIGINT or SIGTERM: the hub on its internal address, the proxy on the public
    one (both bound before anything else starts, so a busy port is told at once)."""
    with contextlib.ExitStack() as sockets:
        hub_socket = sockets.enter_context(startup.bind(config.hub_ip, config.hub_port, "hub"))
        public_socket = None
        if config.proxy == "builtin":
            public_socket = sockets.enter_context(startup.bind(config.ip, config.port, "public"))
        # Known before anything serves: a spawn at once gets the address the hub listens on.
        host, port = hub_socket.getsockname()[:2]
        async with open_hub(config, hub_url=startup.url(host, port, "/hub/")) as hub:
            await _serve(hub, hub_socket, public_socket)


async def _serve(
    hub: context.Hub, hub_socket: socket.socket, public_socket: socket.socket | None
) -> None:
    config = hub.settings
    application = make_app(hub)
    app_runner = web.AppRunner(application, access_log=None)
    await app_runner.setup()
    site = web.SockSite(app_runner, hub_socket)
    await site.start()
    # What start-up made (modules, models, schemas, the app) lives for good: keep it out
    # of the cyclic garbage collector's full passes, which otherwise rescan it all and
    # stall the event loop for tens of milliseconds (measured here; room broadcasts
    # notice first).
    gc.freeze()
    # And collect the young generation every GC_YOUNG_THRESHOLD allocations, not 700: with
    # thousands of connections busy, objects that live a few milliseconds (an update on its
    # way through a room) outlived two young collections and were promoted, so full passes
    # over every connection's objects (370,000 at 1,000 rooms of 4) came every ~7 s, each
    # stalling the loop 0.3 s of CPU (bench-scale's rooms part, issue 20).
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    try:
        host, port = app_runner.addresses[0][:2]
        # Other hub processes forward calls of this one's collaboration sessions here.
        collab_forward.serve_at(
            application,
            startup.url(
                socket.gethostname() if host in ("0.0.0.0", "::") else host,  # noqa: S104
                port,
                "",
            ),
        )
        # The proxy sends /hub/ to the hub's internal address (where single-user servers call
        # its API too, as in JupyterHub: ``hub_url``, set before the site started).
        hub_target = startup.url(host, port, "")
        state = application[proxy_api.PROXY]
        async with run_proxy(hub, hub_target, state, sock=public_socket) as running:
            lines = startup.banner(
                config,
                public=running.url if running is not None else None,
                hub_address=(host, port),
                database=hub.database,
            )
            if hub.isolation is not None:
                code = isolation.describe(hub.isolation.mode, hub.isolation.prefix)
                lines.append(f"users' code: {code}")
            for line in lines:
                print(line, flush=True)
            # A hub listening on every address is reached by its services on the loopback one
            # (JupyterHub means to do so and, by a bug, passes the wildcard on).
            loopback = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104
            api_url = startup.url(loopback, port, "/hub/api")
            async with run_services(hub, api_url, state, application[services_api.SERVICES]):
                stop = asyncio.Event()
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, stop.set)
                await stop.wait()
                log.info("shutting down")
    finally:
        await app_runner.cleanup()
