"""The real ``jupyterhub-singleuser`` (jupyterhub 6.1 + jupyter_server 2, unmodified), spawned by
chronohub's local-process spawner and reached through the built-in proxy.

The client authenticates with API tokens (``Authorization: token ...``): the server's
``HubAuth`` checks each against ``GET /hub/api/user`` and its ``access:servers`` scopes. The
browser's OAuth login to the server needs the hub's OAuth provider (another issue) and is
not exercised here.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path

import aiohttp

from tests.helpers import wait_for
from tests.integration.spawn_fixtures import StartHub

SINGLEUSER = str(Path(sys.executable).parent / "jupyterhub-singleuser")


def _message(msg_type: str, content: dict[str, object]) -> dict[str, object]:
    """A Jupyter message for the kernel's websocket (JSON form of the protocol)."""
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "msg_type": msg_type,
            "username": "test",
            "session": uuid.uuid4().hex,
            "date": "",
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {},
        "content": content,
        "channel": "shell",
        "buffers": [],
    }


async def test_real_singleuser_through_the_builtin_proxy(spawn_hub: StartHub) -> None:
    args = ["--allow-root"] if os.geteuid() == 0 else []
    hub = await spawn_hub(
        command=[SINGLEUSER],
        spawner_args=args,
        start_timeout=90,
        slow_spawn_timeout=90,
        term_timeout=10,
    )
    token = await hub.user("rita")
    outsider = await hub.user("sam")

    status, reply = await hub.call("POST", "/users/rita/server", token=token)
    assert status == 201, (reply, _log(hub.data_dir))
    row = await hub.server("rita")
    assert row is not None
    server_token = _environment(row["pid"])["JUPYTERHUB_API_TOKEN"]

    base = hub.proxy_url + "/user/rita/"
    # Each of these tokens reaches the server through the proxy: the user's own (``self``
    # grants access:servers!user=rita) and the server's (access:servers!server=rita/).
    for who in (token, server_token):
        async with hub.session.get(
            base + "api/status", headers={"Authorization": f"token {who}"}
        ) as response:
            assert response.status == 200, await response.text()
            status_reply = await response.json()
            assert "started" in status_reply
    # Another user's token is refused by the server's HubAuth (no access:servers on rita/).
    async with hub.session.get(
        base + "api/status", headers={"Authorization": f"token {outsider}"}
    ) as response:
        assert response.status == 403, await response.text()

    headers = {"Authorization": f"token {token}"}
    async with hub.session.post(base + "api/kernels", json={}, headers=headers) as response:
        assert response.status == 201, await response.text()
        kernel = await response.json()
    channels = f"{base}api/kernels/{kernel['id']}/channels"
    async with hub.session.ws_connect(channels, headers=headers) as socket:
        request = _message("execute_request", {"code": "6 * 7", "silent": False})
        await socket.send_str(json.dumps(request))
        result = None
        while result is None:
            message = json.loads((await socket.receive(timeout=60)).data)
            if (
                message["msg_type"] == "execute_result"
                and message["parent_header"].get("msg_id") == request["header"]["msg_id"]  # type: ignore[index]
            ):
                result = message["content"]["data"]["text/plain"]
        assert result == "42"

    # The server reported its activity to the hub at start (JUPYTERHUB_ACTIVITY_URL).
    async def reported() -> bool:
        row = await hub.server("rita")
        async with hub.store.pool.acquire() as conn:
            stamp = await conn.fetchval(
                "SELECT last_activity FROM server_activity WHERE user_id = $1", row["user_id"]
            )
        return stamp is not None

    await wait_for(reported, timeout_s=30)

    async with hub.session.delete(f"{base}api/kernels/{kernel['id']}", headers=headers) as response:
        assert response.status == 204
    status, reply = await hub.call("DELETE", "/users/rita/server", token=token)
    assert status == 204, reply
    stopped = json.loads((await hub.events("server.stopped"))[0]["data"])
    assert stopped["forced"] is False  # it stopped on SIGTERM


def _environment(pid: int) -> dict[str, str]:
    """The environment the spawner gave a process (Linux)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def _log(data_dir: Path) -> str:
    path = data_dir / "logs" / "rita.log"
    return path.read_text()[-3000:] if path.exists() else "(no log)"


async def test_unknown_paths_through_the_proxy_reach_the_hub(spawn_hub: StartHub) -> None:
    hub = await spawn_hub("serve")
    async with hub.session.get(hub.proxy_url + "/hub/api/") as response:
        assert response.status == 200
        assert (await response.json())["version"].startswith("6.")
    async with hub.session.get(hub.proxy_url + "/user/nobody/lab") as response:
        assert response.status == 503
    async with (
        aiohttp.ClientSession() as session,
        session.head(hub.proxy_url + "/hub/api/") as response,
    ):
        assert response.status in (200, 405)
