"""The configurable-http-proxy adapter against the real CHP 5.3 (``tests/node/chp``, from npm).

The hub starts CHP (``proxy = "chp"``), adds a route when a server is ready and removes it
when it stops, puts back a route CHP lost, deletes one it should not have, and turns the
traffic CHP saw into server activity.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hub import app, context
from hub import settings as hub_settings
from tests import ports
from tests.helpers import wait_for
from tests.integration.spawn_fixtures import CONFIG, StartHub

pytestmark = [pytest.mark.integration, pytest.mark.interop]


async def test_chp_follows_the_routes_read_model(
    spawn_hub: StartHub, chp_command: list[str]
) -> None:
    hub = await spawn_hub("serve")
    port = ports.free_port()
    config = hub_settings.Settings(
        **{
            **CONFIG,
            "proxy": "chp",
            "chp_command": chp_command,
            "port": port,
            "proxy_check_interval": 0.2,
        }
    )
    hub_context = context.Hub(
        settings=config, store=hub.store, database="test", servers=hub.manager
    )
    hub_target = str(hub.client.make_url("")).rstrip("/")
    async with app.run_proxy(hub_context, hub_target) as running:
        assert running is not None
        chp = running.chp
        assert chp is not None
        public = running.url.rstrip("/")
        api = f"{chp.api_url}/api/routes"

        async def table() -> dict[str, Any]:
            async with hub.session.get(api, headers=chp.headers) as response:
                assert response.status == 200
                routes: dict[str, Any] = await response.json()
                return routes

        assert (await table())["/"]["target"] == hub_target
        async with hub.session.get(public + "/hub/api/") as response:
            assert response.status == 200  # CHP's default target is the hub

        await hub.user("zoe")
        status, reply = await hub.call("POST", "/users/zoe/server")
        assert status == 201, reply
        row = await hub.server("zoe")
        assert row is not None
        route = (await table())["/user/zoe"]
        assert route["target"] == row["url"].removesuffix("/user/zoe/")
        assert route["user"] == "zoe"
        assert route["server_name"] == ""
        async with hub.session.get(public + "/user/zoe/echo?via=chp") as response:
            assert response.status == 200
            assert (await response.json())["path"] == "/user/zoe/echo?via=chp"

        # CHP loses the route: the adapter puts it back.
        async with hub.session.delete(api + "/user/zoe", headers=chp.headers) as response:
            assert response.status == 204

        async def has_route() -> bool:
            return "/user/zoe" in await table()

        await wait_for(has_route, timeout_s=10)
        # A route nobody asked for is removed.
        async with hub.session.post(
            api + "/user/ghost", json={"target": "http://127.0.0.1:9"}, headers=chp.headers
        ) as response:
            assert response.status == 201

        async def ghost_gone() -> bool:
            return "/user/ghost" not in await table()

        await wait_for(ghost_gone, timeout_s=10)

        # Traffic CHP saw becomes the server's activity.
        before = datetime.now(UTC) - timedelta(seconds=1)
        async with hub.session.get(public + "/user/zoe/api") as response:
            assert response.status == 200

        async def active() -> bool:
            status, user = await hub.call("GET", "/users/zoe")
            assert status == 200, user
            stamp = user["servers"][""]["last_activity"]
            return datetime.fromisoformat(stamp.replace("Z", "+00:00")) >= before

        await wait_for(active, timeout_s=10)

        status, reply = await hub.call("DELETE", "/users/zoe/server")
        assert status == 204, reply
        assert "/user/zoe" not in await table()  # removed before the stop was answered
        async with hub.session.get(public + "/user/zoe/api/x", allow_redirects=False) as response:
            assert response.status == 302  # the hub: to its prefix, where the login cookie goes
            assert response.headers["Location"] == "/hub/user/zoe/api/x"
    assert chp.process is not None
    assert chp.process.returncode is not None  # the hub's CHP stopped with it
