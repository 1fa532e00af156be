"""The real ``jupyterhub-singleuser`` (jupyterhub 6.1 + jupyter_server 2, unmodified), spawned by
chronohub's local-process spawner and reached through the built-in proxy.

One client authenticates with API tokens (``Authorization: token ...``): the server's
``HubAuth`` checks each against ``GET /hub/api/user`` and its ``access:servers`` scopes.
Another is a browser (cookies, no token) that logs in through the hub's OAuth provider,
as the server's own ``HubOAuth`` sends it to.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from hub.auth import tokens
from hub.auth.oauth import clients as oauth_clients
from tests.helpers import wait_for
from tests.integration.browser import PASSWORD, Browser
from tests.integration.spawn_fixtures import SpawnHub, StartHub

pytestmark = [pytest.mark.integration, pytest.mark.interop]

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


@pytest.mark.collab  # a kernel of the real server
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
    async with hub.session.get(
        hub.proxy_url + "/user/nobody/lab", allow_redirects=False
    ) as response:
        assert response.status == 302  # to /hub/user/nobody/lab, where the login cookie goes
        assert response.headers["Location"] == "/hub/user/nobody/lab"
    async with (
        aiohttp.ClientSession() as session,
        session.head(hub.proxy_url + "/hub/api/") as response,
    ):
        assert response.status in (200, 405)


async def test_a_browser_logs_in_to_the_real_server_through_the_hubs_oauth(
    spawn_hub: StartHub,
) -> None:
    args = ["--allow-root"] if os.geteuid() == 0 else []
    hub = await spawn_hub(
        command=[SINGLEUSER], spawner_args=args, start_timeout=90, slow_spawn_timeout=90
    )
    token = await hub.user("rita")
    await hub.user("sam")
    for name in ("rita", "sam"):
        status, reply = await hub.call(
            "PUT", f"/users/{name}/password", json={"password": PASSWORD}
        )
        assert status == 204, reply
    assert (await hub.call("POST", "/users/rita/server", token=token))[0] == 201
    (hub.data_dir / "users" / "rita" / "hello.txt").write_text("hello rita")

    rita, sam = Browser(hub.proxy_url), Browser(hub.proxy_url)
    try:
        # No token, no cookie: the server sends the browser to the hub's authorize endpoint,
        # which (not signed in) sends it to the login page, through the proxy all along.
        authorize = await _to_authorize(rita, "/user/rita/files/hello.txt")
        to_login = await rita.get(authorize)
        assert to_login.status == 302
        login_url = to_login.location or ""
        assert login_url.startswith("/hub/login?next=")
        form = await rita.get(login_url)
        signed_in = await rita.post(
            login_url,
            data={"_xsrf": form.hidden("_xsrf"), "username": "rita", "password": PASSWORD},
        )
        assert signed_in.status == 302, signed_in.text
        assert urlsplit(signed_in.location or "").path == "/hub/api/oauth2/authorize"
        # Her own server: no consent page; straight back to the server's callback.
        granted = await rita.get(signed_in.location or "")
        assert granted.status == 302, granted.text
        callback = urlsplit(granted.location or "")
        assert callback.path == "/user/rita/oauth_callback"
        # Bad inputs at the server's callback (checked by the real HubOAuth), with the real
        # code: no state, or one this browser was never given. Refused; the code untried.
        code = parse_qs(callback.query)["code"][0]
        for query, expected in ((f"code={code}", 400), (f"code={code}&state=forged", 403)):
            refused = await rita.get(f"/user/rita/oauth_callback?{query}")
            assert refused.status == expected, (refused.status, refused.text)
            assert rita.cookie("jupyterhub-user-rita") is None
        # A code issued to rita's server, presented by another client: refused, and spent.
        sam_secret = await hub.user("sam")  # as if sam's server had this token
        await oauth_clients.register_server_client(
            hub.store,
            user="sam",
            server_name="",
            redirect_uri=None,
            token_id=await _token_id(hub, sam_secret),
        )
        status, reply = await _exchange(hub, code, "jupyterhub-user-sam", sam_secret)
        assert (status, reply["error"]) == (400, "invalid_grant"), reply
        assert reply["message"] == "the authorization code was issued to another client"
        refused = await rita.get(granted.location or "")
        assert refused.status == 403  # its state was used up by the forged attempt above

        # Again from the start (signed in at the hub now: no login page).
        granted = await rita.get(await _to_authorize(rita, "/user/rita/files/hello.txt"))
        assert granted.status == 302, granted.text
        # The server exchanges the code (its secret: its API token), sets its cookie and
        # sends the browser back to the page it asked for.
        back = await rita.get(granted.location or "")
        assert back.status == 302, back.text
        assert back.location == "/user/rita/files/hello.txt"
        assert rita.cookie("jupyterhub-user-rita") is not None
        page = await rita.get("/user/rita/files/hello.txt")
        assert (page.status, page.text) == (200, "hello rita")
        contents = await rita.get("/user/rita/api/contents")
        assert contents.status == 200, contents.text
        assert "hello.txt" in [item["name"] for item in json.loads(contents.text)["content"]]
        exchanged = await hub.events("oauth.code_exchanged")
        assert len(exchanged) == 1
        assert json.loads(exchanged[0]["data"])["client_id"] == "jupyterhub-user-rita"

        # A redirect the server's client did not register: refused, no redirect, no code.
        evil = await rita.get(
            "/hub/api/oauth2/authorize?client_id=jupyterhub-user-rita&response_type=code"
            "&redirect_uri=http%3A%2F%2Fevil.example%2Fcb&state=x"
        )
        assert evil.status == 400
        assert evil.location is None

        # Another signed-in user: the hub refuses to authorize them for rita's server.
        tokens_before = await _count(hub, "SELECT count(*) FROM tokens")
        codes_before = len(await hub.events("oauth.code_issued"))
        authorize = await _to_authorize(sam, "/user/rita/files/hello.txt")
        await sam.login("sam", PASSWORD)
        refused = await sam.get(authorize)
        assert refused.status == 403, refused.text
        assert "rita" in refused.text
        assert sam.cookie("jupyterhub-user-rita") is None
        denied = await sam.get("/user/rita/api/contents")
        assert denied.status == 403
        assert len(await hub.events("oauth.code_issued")) == codes_before  # nothing granted
        assert await _count(hub, "SELECT count(*) FROM tokens") == tokens_before
    finally:
        await rita.close()
        await sam.close()


async def _to_authorize(browser: Browser, path: str) -> str:
    """Ask the server for ``path``; the hub authorize URL it redirects to."""
    start = await browser.get(path)
    assert start.status == 302, (start.status, start.text)
    authorize = start.location or ""
    assert authorize.startswith("/hub/api/oauth2/authorize?"), authorize
    query = parse_qs(urlsplit(authorize).query)
    assert query["client_id"] == ["jupyterhub-user-rita"]
    assert query["redirect_uri"] == ["/user/rita/oauth_callback"]
    return authorize


async def _exchange(hub: SpawnHub, code: str, client_id: str, secret: str) -> tuple[int, Any]:
    """The token request a server makes with ``code``, as ``client_id``."""
    response = await hub.client.post(
        "/hub/api/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": client_id,
            "client_secret": secret,
            "redirect_uri": "/user/rita/oauth_callback",
        },
    )
    return response.status, await response.json()


async def _token_id(hub: SpawnHub, secret: str) -> str:
    async with hub.store.pool.acquire() as conn:
        token_id: str = await conn.fetchval(
            "SELECT token_id FROM token_secrets WHERE hash = $1", tokens.digest(secret)
        )
    return token_id


async def _count(hub: SpawnHub, query: str) -> int:
    async with hub.store.pool.acquire() as conn:
        found: int = await conn.fetchval(query)
    return found
