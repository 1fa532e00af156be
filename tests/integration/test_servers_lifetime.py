"""What the server manager keeps over a server's life: no lock outlives its server."""

from __future__ import annotations

from tests.helpers import wait_for
from tests.integration.spawn_fixtures import StartHub


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
