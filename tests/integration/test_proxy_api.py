"""``/hub/api/proxy`` (JupyterHub's proxy API) with the built-in proxy and with the real
configurable-http-proxy (``tests/node/chp``, from npm)."""

from __future__ import annotations

from typing import Any

import pytest

from hub import app, context
from hub import settings as hub_settings
from hub.api import models as api_models
from hub.api import proxy as proxy_api
from hub.proxy import chp
from tests import ports
from tests.integration.spawn_fixtures import CONFIG, StartHub

pytestmark = pytest.mark.integration


async def test_the_builtin_proxys_table_resync_and_no_patch(spawn_hub: StartHub) -> None:
    hub = await spawn_hub("serve")
    user_token = await hub.user("pia")
    assert (await hub.call("POST", "/users/pia/server"))[0] == 201
    row = await hub.server("pia")
    assert row is not None

    status, table = await hub.call("GET", "/proxy")
    assert status == 200, table
    api_models.ProxyTable.model_validate(table)
    hub_target = str(hub.client.make_url("")).rstrip("/")
    assert table == {
        "/": {"routespec": "/", "target": hub_target, "data": {"hub": True}},
        "/user/pia/": {
            "routespec": "/user/pia/",
            "target": row["url"].removesuffix("/user/pia/"),
            "data": {"user": "pia", "server_name": ""},
        },
    }
    # JupyterHub's pagination: a page of the table, sorted by routespec.
    status, page = await hub.call(
        "GET",
        "/proxy?offset=1&limit=1",
        headers={"Accept": "application/jupyterhub-pagination+json"},
    )
    assert status == 200, page
    assert list(page["items"]) == ["/user/pia/"]
    assert page["_pagination"]["total"] == 2
    assert (await hub.call("GET", "/proxy?offset=-1"))[0] == 400

    # The scope is ``proxy``: a user's own token does not have it.
    for method in ("GET", "POST", "PATCH"):
        status, reply = await hub.call(method, "/proxy", token=user_token, json={})
        assert status == 403, reply

    # The proxy lost its routes: POST puts the read model back at once.
    hub.proxy.set_routes([])
    assert list((await hub.call("GET", "/proxy"))[1]) == ["/"]
    status, _ = await hub.call("POST", "/proxy")
    assert status == 200
    assert list((await hub.call("GET", "/proxy"))[1]) == ["/", "/user/pia/"]

    # PATCH is for configurable-http-proxy: the built-in proxy has nowhere to point to.
    status, reply = await hub.call("PATCH", "/proxy", json={"auth_token": "x"})
    assert status == 400
    assert "built-in proxy" in reply["message"]
    for bad, word in (
        ({"ip": "10.0.0.1"}, "ip"),
        ({"api_url": "ftp://x"}, "api_url"),
        ({"auth_token": ""}, "auth_token"),
        ([1], "object"),
    ):
        status, reply = await hub.call("PATCH", "/proxy", json=bad)
        assert status == 400, reply
        assert word in reply["message"], reply


@pytest.mark.interop  # the real configurable-http-proxy
async def test_patch_moves_the_hub_to_another_chp_and_keeps_the_old_one_if_refused(
    spawn_hub: StartHub,
    chp_command: list[str],
) -> None:
    hub = await spawn_hub("serve")
    config = hub_settings.Settings(
        **{
            **CONFIG,
            "proxy": "chp",
            "chp_command": chp_command,
            "port": ports.free_port(),
            "proxy_check_interval": 3600,
        }
    )
    hub_context = context.Hub(
        settings=config, store=hub.store, database="test", servers=hub.manager
    )
    hub_target = str(hub.client.make_url("")).rstrip("/")
    assert hub.client.app is not None
    state = hub.client.app[proxy_api.PROXY]
    await hub.user("quin")
    assert (await hub.call("POST", "/users/quin/server"))[0] == 201
    async with (
        app.run_proxy(hub_context, hub_target, state) as running,
        chp.ChpProxy(
            command=chp_command,
            api_url=None,
            auth_token="second-proxy-token-0123456789",
            ip="127.0.0.1",
            port=ports.free_port(),
            hub_target=hub_target,
            ports=ports.PICKER,
        ) as second,
    ):
        assert running is not None
        assert running.chp is not None
        first_url = running.chp.api_url
        status, table = await hub.call("GET", "/proxy")
        assert status == 200, table
        assert table["/user/quin/"]["data"]["user"] == "quin"
        assert table["/"]["target"] == hub_target
        assert table["/"]["data"]["hub"] is True  # CHP adds last_activity beside it
        assert "/user/quin" not in await second.routes()

        # A token the new proxy refuses: 400, and the hub stays with the proxy it had.
        status, reply = await hub.call(
            "PATCH", "/proxy", json={"api_url": second.api_url, "auth_token": "wrong"}
        )
        assert status == 400, reply
        assert "keeps its current proxy" in reply["message"]
        assert running.chp.api_url == first_url

        status, reply = await hub.call(
            "PATCH",
            "/proxy",
            json={"api_url": second.api_url, "auth_token": "second-proxy-token-0123456789"},
        )
        assert status == 200, reply
        assert running.chp.api_url == second.api_url
        routes: dict[str, Any] = await second.routes()
        assert routes["/user/quin"]["user"] == "quin"  # synced at once
        status, table = await hub.call("GET", "/proxy")
        assert status == 200, table
        assert "/user/quin/" in table
