"""What the server manager keeps, and what it knows, over a server's life: no lock outlives a
server, and the hub's URL that servers are given is the one it serves at from the start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from events import models
from hub import app
from hub import settings as hub_settings
from tests.helpers import wait_for
from tests.integration.spawn_fixtures import StartHub, fake

pytestmark = pytest.mark.integration


async def test_no_per_server_lock_outlives_its_server(spawn_hub: StartHub) -> None:
    hub = await spawn_hub("serve")
    for name in ("ann", "ben"):
        await hub.user(name)
        status, reply = await hub.call("POST", f"/users/{name}/server")
        assert status == 201, reply
    status, reply = await hub.call("DELETE", "/users/ann/server")
    assert status == 204, reply
    status, reply = await hub.call("DELETE", "/users/ben/server")
    assert status == 204, reply
    await hub.manager.wait_idle(10)
    await wait_for(lambda: not hub.manager._live)
    assert len(hub.manager._locks) == 0


async def test_a_spawn_before_the_site_serves_is_given_the_hubs_own_url(
    db_url: str, tmp_path: Path
) -> None:
    config = hub_settings.Settings(
        database_url=db_url,
        data_dir=tmp_path / "state",
        spawner_cmd=fake("serve"),
        admin_users=["root"],
        start_timeout=20,
        slow_spawn_timeout=15,
        single_user_mode=True,  # the fake server runs as the test's own account
        single_user_mode_all_users=True,
    )
    url = "http://127.0.0.1:40123/hub/"  # what serve() passes: its bound socket's address
    async with app.open_hub(config, hub_url=url) as hub:
        assert hub.servers is not None
        assert hub.servers.hub_url == url
        async with hub.store.pool.acquire() as conn:
            user_id = await conn.fetchval("SELECT user_id FROM users WHERE name = 'root'")
        # No site serves yet: the server is still told where the hub's API is.
        outcome = await hub.servers.spawn(user_id, "root", "", {}, models.Metadata())
        assert outcome == "ready"
        env = json.loads((tmp_path / "state" / "users" / "root" / "env.json").read_text())
        assert env["JUPYTERHUB_API_URL"] == url + "api"
    # Without a bound socket (one-shot commands, tests), from hub_ip and hub_port.
    async with app.open_hub(config.model_copy(update={"hub_port": 8099})) as hub:
        assert hub.servers is not None
        assert hub.servers.hub_url == "http://127.0.0.1:8099/hub/"
