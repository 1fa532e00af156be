"""A hub that spawns servers, for the server tests: the real application, server manager,
local-process spawner and built-in proxy, on the test database, with a test spawner command
(``tests/spawners/fake_server.py MODE`` unless told otherwise)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import test_utils

from events import store
from hub import app, bootstrap, context
from hub import settings as hub_settings
from hub.api import proxy as proxy_api
from hub.proxy import builtin as proxy
from hub.proxy import routes, table
from hub.servers import config as servers_config
from hub.servers import manager as servers
from hub.servers import spawner
from tests.helpers import call_api
from tests.integration.browser import PASSWORD, Browser

ADMIN_TOKEN = "spawn-admin-secret-0123456789abcdef"
FAKE_SERVER = Path(__file__).resolve().parent.parent / "spawners" / "fake_server.py"

CONFIG: dict[str, Any] = {
    "database_url": "postgresql://unused",
    "services": [{"name": "operator", "api_token": ADMIN_TOKEN}],
    "roles": [
        {
            "name": "operator-role",
            "scopes": ["admin:users", "admin:servers", "tokens", "read:hub", "proxy"],
            "services": ["operator"],
        }
    ],
    "start_timeout": 20,
    "slow_spawn_timeout": 15,
    "term_timeout": 2,
    # The fake servers run as the test's own account, whoever runs the tests; running them as
    # users' own system accounts is tests/integration/test_isolation.py's.
    "single_user_mode": True,
    "single_user_mode_all_users": True,
}


def fake(mode: str) -> list[str]:
    """The spawner command of a fake server in ``mode``."""
    return [sys.executable, str(FAKE_SERVER), mode]


@dataclass
class SpawnHub:
    """A running hub with its proxy; ``call`` talks to the hub API, ``proxied`` to the proxy."""

    client: test_utils.TestClient[Any, Any]
    session: aiohttp.ClientSession
    store: store.EventStore
    manager: servers.ServerManager
    proxy: proxy.Proxy
    proxy_url: str
    data_dir: Path
    closing: contextlib.AsyncExitStack  # what the fixture closes at the end

    async def call(
        self, method: str, path: str, token: str | None = ADMIN_TOKEN, **kwargs: Any
    ) -> tuple[int, Any]:
        return await call_api(self.client, method, path, token, **kwargs)

    async def user(self, name: str) -> str:
        """Create ``name`` and return a token of theirs."""
        status, reply = await self.call("POST", f"/users/{name}")
        assert status in (201, 409), reply
        status, reply = await self.call("POST", f"/users/{name}/tokens", json={})
        assert status == 201, reply
        token: str = reply["token"]
        return token

    async def people(self, *names: str) -> None:
        """Create these users (if need be), each with the test password."""
        for name in names:
            await self.user(name)
            status, reply = await self.call(
                "PUT", f"/users/{name}/password", json={"password": PASSWORD}
            )
            assert status == 204, reply

    def browser(self, headers: dict[str, str] | None = None) -> Browser:
        """A cookie-keeping client that talks only to the proxy (closed with the hub)."""
        opened = Browser(self.proxy_url, headers=headers)
        self.closing.push_async_callback(opened.close)
        return opened

    async def events(self, prefix: str = "server.") -> list[asyncpg.Record]:
        async with self.store.pool.acquire() as conn:
            return await conn.fetch(
                "SELECT event_type, data, actor FROM events WHERE event_type LIKE $1"
                " ORDER BY global_position",
                prefix + "%",
            )

    async def event_types(self, prefix: str = "server.") -> list[str]:
        return [row["event_type"] for row in await self.events(prefix)]

    async def server(self, user: str, name: str = "") -> asyncpg.Record | None:
        async with self.store.pool.acquire() as conn:
            return await conn.fetchrow(
                "SELECT * FROM servers WHERE user_name = $1 AND server_name = $2", user, name
            )

    async def routes(self) -> dict[str, str]:
        async with self.store.pool.acquire() as conn:
            rows = await conn.fetch("SELECT routespec, target FROM routes")
        return {row["routespec"]: row["target"] for row in rows}


StartHub = Callable[..., Awaitable[SpawnHub]]


@pytest.fixture
async def spawn_hub(event_store: store.EventStore, tmp_path: Path) -> AsyncIterator[StartHub]:
    """Start a spawning hub: ``await spawn_hub("serve", start_timeout=1, ...)``."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(
            mode: str = "serve",
            command: list[str] | None = None,
            oauth: spawner.OAuthClients | None = None,
            on_store: store.EventStore | None = None,
            **overrides: Any,
        ) -> SpawnHub:
            # on_store: a store of its own (with its own notifier), as a second hub process has
            event_store_ = on_store or event_store
            config = hub_settings.Settings(
                **{
                    **CONFIG,
                    "spawner_cmd": command or fake(mode),
                    "data_dir": tmp_path / "state",
                    **overrides,
                }
            )
            await bootstrap.reconcile(event_store_, config)
            manager = servers.ServerManager(
                event_store_,
                servers.settings_from(config),
                # spawner_class: a JupyterHub spawner, as the serving hub builds it
                spawner_=servers_config.jupyterhub_spawner(config),
                oauth=oauth,
            )
            await manager.start()
            stack.push_async_callback(manager.close, stop_servers=True)
            hub = context.Hub(
                settings=config,
                store=event_store_,
                database="test",
                servers=manager,
                isolation=manager.settings.isolation,
            )
            client = test_utils.TestClient(test_utils.TestServer(app.make_app(hub)))
            await stack.enter_async_context(client)
            hub_target = str(client.make_url("")).rstrip("/")
            manager.hub_url = hub_target + "/hub/"
            builtin = proxy.Proxy(
                hub_target, on_activity=manager.record_activity, activity_interval=3600
            )
            stack.push_async_callback(builtin.close)
            host, port = await builtin.start("127.0.0.1", 0)

            async def to_proxy(table: list[table.Route]) -> None:
                builtin.set_routes(table)

            follower = routes.RouteFollower(event_store_.pool, [to_proxy], 3600)
            await follower.start()
            stack.push_async_callback(follower.stop)
            manager.on_routes_changed(follower.refresh)
            assert client.app is not None
            state = client.app[proxy_api.PROXY]  # for /hub/api/proxy
            state.builtin, state.refresh = builtin, follower.refresh
            session = await stack.enter_async_context(aiohttp.ClientSession())
            return SpawnHub(
                client,
                session,
                event_store_,
                manager,
                builtin,
                f"http://{host}:{port}",
                tmp_path / "state",
                stack,
            )

        yield start
