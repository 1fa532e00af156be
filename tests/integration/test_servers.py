"""Spawning, routing to and stopping servers, with deliberately faulty spawner commands.

Each test runs the real hub application, server manager, local-process spawner and built-in
proxy on its own PostgreSQL database; the servers are ``tests/spawners/fake_server.py``.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from events.catalog import servers as server_events
from hub import ports as hub_ports
from hub.api import models as api_models
from hub.servers import isolation
from tests import ports as test_ports
from tests.helpers import wait_for
from tests.integration.spawn_fixtures import SpawnHub, StartHub

pytestmark = pytest.mark.integration

LIFECYCLE = [
    "server.spawn_requested",
    "server.started",
    "server.ready",
    "server.stop_requested",
    "server.stopped",
]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def whoami(hub: SpawnHub, token: str) -> tuple[int, dict[str, object]]:
    status, reply = await hub.call("GET", "/user", token=token)
    return status, reply


@dataclass(frozen=True)
class Running:
    """Alice's default server, spawned through the API with her own token."""

    hub: SpawnHub
    token: str
    pid: int
    url: str


@pytest.fixture
async def running(spawn_hub: StartHub) -> Running:
    hub = await spawn_hub("serve")
    token = await hub.user("alice")
    status, reply = await hub.call("POST", "/users/alice/server", token=token)
    assert status == 201, reply
    row = await hub.server("alice")
    assert row is not None
    return Running(hub, token, row["pid"], row["url"])


async def test_a_spawned_server_is_recorded_ready_and_routed(running: Running) -> None:
    hub, pid, url = running.hub, running.pid, running.url
    row = await hub.server("alice")
    assert row is not None
    assert row["state"] == "ready"
    assert alive(pid)
    assert url.startswith("http://127.0.0.1:")
    assert url.endswith("/user/alice/")
    assert await hub.routes() == {"/user/alice/": url.removesuffix("/user/alice/")}
    assert await hub.event_types() == LIFECYCLE[:3]
    started = (await hub.events("server.started"))[0]
    assert json.loads(started["data"])["pid"] == pid
    assert json.loads(started["data"])["url"] == url


async def test_the_user_model_carries_the_server_as_jupyterhubs_does(running: Running) -> None:
    hub = running.hub
    status, user = await hub.call("GET", "/users/alice")
    assert status == 200, user
    assert user["server"] == "/user/alice/"
    assert user["pending"] is None
    server = user["servers"][""]
    api_models.Server.model_validate(server)
    api_models.User.model_validate(user)
    assert server["ready"] is True
    assert server["pending"] is None
    assert server["url"] == "/user/alice/"
    assert server["progress_url"] == "/hub/api/users/alice/server/progress"
    assert server["started"] is not None
    assert server["state"] == {"pid": running.pid}
    status, ready = await hub.call("GET", "/users?state=ready")
    assert status == 200, ready
    assert [u["name"] for u in ready] == ["alice"]
    status, inactive = await hub.call("GET", "/users?state=inactive")
    assert status == 200, inactive
    assert "alice" not in [u["name"] for u in inactive]


async def test_the_server_gets_jupyterhubs_environment_and_nothing_of_the_hubs(
    running: Running,
) -> None:
    hub = running.hub
    env = json.loads((hub.data_dir / "users" / "alice" / "env.json").read_text())
    api_url = hub.manager.hub_url + "api"
    assert env["JUPYTERHUB_API_URL"] == api_url
    assert env["JUPYTERHUB_ACTIVITY_URL"] == api_url + "/users/alice/activity"
    assert env["JUPYTERHUB_USER"] == "alice"
    assert env["JUPYTERHUB_SERVER_NAME"] == ""
    assert env["JUPYTERHUB_SERVICE_PREFIX"] == "/user/alice/"
    assert env["JUPYTERHUB_SERVICE_URL"] == running.url
    assert env["JUPYTERHUB_CLIENT_ID"] == "jupyterhub-user-alice"
    assert env["JUPYTERHUB_OAUTH_CALLBACK_URL"] == "/user/alice/oauth_callback"
    assert json.loads(env["JUPYTERHUB_OAUTH_ACCESS_SCOPES"]) == [
        "access:servers!server=alice/",
        "access:servers!user=alice",
    ]
    assert env["JUPYTERHUB_BASE_URL"] == "/"
    assert env["HOME"] == str(hub.data_dir / "users" / "alice")
    assert not [k for k in env if k.startswith(("CHRONOHUB_", "PG")) or k == "DATABASE_URL"]


async def test_the_servers_own_token_shows_the_scopes_hubauth_checks(running: Running) -> None:
    hub = running.hub
    env = json.loads((hub.data_dir / "users" / "alice" / "env.json").read_text())
    server_token = env["JUPYTERHUB_API_TOKEN"]
    status, me = await whoami(hub, server_token)
    assert status == 200, me
    assert me["name"] == "alice"
    assert "access:servers!server=alice/" in me["scopes"]  # type: ignore[operator]
    assert "users:activity!user=alice" in me["scopes"]  # type: ignore[operator]
    status, denied = await hub.call("GET", "/users/alice/tokens", token=server_token)
    assert status == 403, denied


async def test_the_proxy_keeps_path_query_and_headers_and_adds_forwarded_ones(
    running: Running,
) -> None:
    hub = running.hub
    async with hub.session.post(
        hub.proxy_url + "/user/alice/echo?x=1", data=b"hello", headers={"X-Custom": "kept"}
    ) as response:
        assert response.status == 200
        seen = await response.json()
    assert seen["method"] == "POST"
    assert seen["path"] == "/user/alice/echo?x=1"
    assert seen["body_length"] == 5
    assert seen["headers"]["X-Custom"] == "kept"
    assert seen["headers"]["Host"] == hub.proxy_url.removeprefix("http://")
    assert seen["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert seen["headers"]["X-Forwarded-Proto"] == "http"


async def test_a_stop_records_every_transition_and_leaves_nothing_behind(
    running: Running,
) -> None:
    hub, token, pid = running.hub, running.token, running.pid
    env = json.loads((hub.data_dir / "users" / "alice" / "env.json").read_text())
    server_token = env["JUPYTERHUB_API_TOKEN"]
    status, reply = await hub.call("DELETE", "/users/alice/server", token=token)
    assert status == 204, reply
    await wait_for(lambda: not alive(pid), timeout_s=5)
    assert await hub.event_types() == LIFECYCLE
    # Every transition is attributed to whoever asked for it.
    assert {row["actor"] for row in await hub.events()} == {"user:alice"}
    assert (await hub.server("alice"))["state"] == "stopped"  # type: ignore[index]
    assert await hub.routes() == {}
    status, user = await hub.call("GET", "/users/alice")
    assert status == 200, user
    assert user["servers"] == {}
    assert user["server"] is None
    # The server's token went with it; the proxy now sends /user/alice/ to the hub.
    assert (await whoami(hub, server_token))[0] == 403
    async with hub.session.get(
        hub.proxy_url + "/user/alice/api/status", headers={"Authorization": f"token {token}"}
    ) as response:
        assert response.status == 424  # an API call to a stopped server, as JupyterHub
        assert "no longer running" in (await response.json())["message"]


async def test_websocket_and_large_bodies_pass_through_the_proxy(spawn_hub: StartHub) -> None:
    hub = await spawn_hub("serve")
    await hub.user("bob")
    status, reply = await hub.call("POST", "/users/bob/server")
    assert status == 201, reply

    async with hub.session.ws_connect(hub.proxy_url + "/user/bob/ws") as socket:
        for text in ("one", "two" * 10_000):
            await socket.send_str(text)
            message = await socket.receive(timeout=5)
            assert message.data == "echo:" + text

    body = os.urandom(3 * 1024 * 1024)

    async def chunks() -> AsyncIterator[bytes]:  # sent chunked: re-framed by the proxy
        for start in range(0, len(body), 100_000):
            yield body[start : start + 100_000]

    async with hub.session.put(hub.proxy_url + "/user/bob/echo", data=chunks()) as response:
        assert response.status == 200
        assert (await response.json())["body_length"] == len(body)
    async with hub.session.put(
        hub.proxy_url + "/user/bob/echo", data=io.BytesIO(body)
    ) as response:  # sent with a Content-Length
        assert response.status == 200
        assert (await response.json())["body_length"] == len(body)
    async with hub.session.get(hub.proxy_url + "/user/bob/big?size=5000000") as response:
        assert response.status == 200
        assert len(await response.read()) == 5_000_000
    # Keep-alive: many requests on one client connection reuse upstream connections.
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as one:
        for _ in range(20):
            async with one.get(hub.proxy_url + "/user/bob/api") as response:
                assert response.status == 200
                await response.read()
    # Proxied traffic is the server's activity, written when the proxy flushes it.
    before = datetime.now(UTC) - timedelta(seconds=1)
    await hub.proxy.flush_activity()
    status, user = await hub.call("GET", "/users/bob")
    assert status == 200, user
    last = datetime.fromisoformat(user["servers"][""]["last_activity"].replace("Z", "+00:00"))
    assert last >= before


async def test_a_server_stops_even_where_no_new_one_may_start(spawn_hub: StartHub) -> None:
    """Whose code may run is asked when a server starts, never when it stops: a hub whose
    isolation now refuses everyone (a root hub restarted unprivileged, say) still stops the
    servers it runs."""
    hub = await spawn_hub("serve")
    await hub.user("dora")
    status, reply = await hub.call("POST", "/users/dora/server")
    assert status == 201, reply
    hub.manager.settings.isolation = isolation.Isolation("none")
    status, reply = await hub.call("POST", "/users/dora/servers/other")
    assert status == 403, reply
    assert "cannot run on this hub" in reply["message"]
    status, reply = await hub.call("DELETE", "/users/dora/server")
    assert status == 204, reply
    await wait_for(lambda: _state(hub, "dora", "stopped"), timeout_s=15)


async def test_spawning_twice_and_stopping_a_stopped_server(spawn_hub: StartHub) -> None:
    hub = await spawn_hub("slow", slow_spawn_timeout=0.2, spawner_env={"FAKE_DELAY": "1.5"})
    await hub.user("carol")
    status, reply = await hub.call("POST", "/users/carol/server")
    assert status == 202, reply  # still starting
    status, reply = await hub.call("POST", "/users/carol/server")
    assert status == 202, reply  # the same pending spawn, not a second one
    status, user = await hub.call("GET", "/users/carol")
    assert status == 200, user
    assert user["pending"] == "spawn"
    assert user["servers"][""]["ready"] is False
    await wait_for(lambda: _state(hub, "carol", "ready"), timeout_s=15)
    status, reply = await hub.call("POST", "/users/carol/server")
    assert status == 400, reply
    assert reply["message"] == "carol's server is already running"
    assert (await hub.event_types()).count("server.spawn_requested") == 1

    status, reply = await hub.call("DELETE", "/users/carol/server")
    assert status == 204, reply
    before = await hub.event_types("")
    status, reply = await hub.call("DELETE", "/users/carol/server")
    assert status == 400, reply
    assert reply["message"] == "carol's server is not running"
    assert await hub.event_types("") == before  # nothing written


async def _state(hub: SpawnHub, user: str, state: str, name: str = "") -> bool:
    row = await hub.server(user, name)
    return row is not None and row["state"] == state


@pytest.mark.parametrize(
    ("command", "overrides", "message"),
    [
        (
            ["/nonexistent/jupyterhub-singleuser"],
            {},
            "'/nonexistent/jupyterhub-singleuser' does not exist",
        ),
        (
            None,
            {"mode": "exit"},
            "exited with code 3 before it answered: fake server: giving up at once",
        ),
        (None, {"mode": "hang", "start_timeout": 1}, "did not answer at http://127.0.0.1:"),
    ],
    ids=["no-such-command", "exits-at-once", "never-ready"],
)
async def test_a_failed_spawn_is_a_clear_error_and_a_failed_event(
    spawn_hub: StartHub, command: list[str] | None, overrides: dict[str, object], message: str
) -> None:
    overrides = dict(overrides)
    mode = str(overrides.pop("mode", "serve"))
    hub = await spawn_hub(mode, command=command, **overrides)
    await hub.user("dave")
    status, reply = await hub.call("POST", "/users/dave/server")
    assert status == 500, reply
    assert reply["message"].startswith("Spawn failed: the s")  # said once
    assert message in reply["message"]

    types = await hub.event_types()
    assert types[0] == "server.spawn_requested"
    assert types[-1] == "server.failed"
    assert "server.ready" not in types
    failed = json.loads((await hub.events("server.failed"))[0]["data"])
    assert failed["kind"] == "system"
    assert message in failed["reason"]
    row = await hub.server("dave")
    assert row["state"] == "failed"
    assert row["pid"] is None
    assert await hub.routes() == {}
    # The server's token was revoked; the user shows no server; a new spawn may be tried.
    assert (await hub.event_types("token.revoked")) == ["token.revoked"]
    status, user = await hub.call("GET", "/users/dave")
    assert status == 200, user
    assert user["servers"] == {}
    assert user["pending"] is None


async def test_servers_get_ports_of_port_range_and_a_range_all_taken_fails_the_spawn(
    spawn_hub: StartHub,
) -> None:
    hub = await spawn_hub("serve")  # this worker's hubs' range (tests/ports.py)
    low, high = hub_ports.parse(test_ports.HUB_RANGE)
    await hub.user("erin")
    status, reply = await hub.call("POST", "/users/erin/server")
    assert status == 201, reply
    row = await hub.server("erin")
    assert row is not None
    assert low <= urlsplit(row["url"]).port <= high

    taken = test_ports.free_port()
    with socket.create_server(("127.0.0.1", taken)):
        full = await spawn_hub("serve", port_range=f"{taken}-{taken}")
        await full.user("fay")
        status, reply = await full.call("POST", "/users/fay/server")
    assert status == 500, reply
    assert f"no port of port_range {taken}-{taken} is free" in reply["message"]
    failed = json.loads((await full.events("server.failed"))[0]["data"])
    assert failed["kind"] == "system"


async def test_a_server_that_never_answers_reports_failure_on_the_progress_stream(
    spawn_hub: StartHub,
) -> None:
    hub = await spawn_hub("hang", start_timeout=1.5, slow_spawn_timeout=0)
    await hub.user("erin")
    status, reply = await hub.call("POST", "/users/erin/server")
    assert status == 202, reply
    events = []
    async with hub.client.get(
        "/hub/api/users/erin/server/progress",
        headers={"Authorization": "token spawn-admin-secret-0123456789abcdef"},
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        async for line in response.content:
            if line.startswith(b"data: "):
                events.append(json.loads(line[6:]))
    assert [e["progress"] for e in events] == sorted(e["progress"] for e in events)
    assert events[-1]["failed"] is True
    assert events[-1]["message"].startswith("Spawn failed: the server did not answer")
    status, reply = await hub.call("GET", "/users/erin/server/progress")
    assert status == 400
    assert reply["message"] == "erin's server is not starting"


async def test_progress_of_a_ready_server_ends_at_once(spawn_hub: StartHub) -> None:
    hub = await spawn_hub("serve")
    await hub.user("fay")
    assert (await hub.call("POST", "/users/fay/server"))[0] == 201
    status, text = await hub.call("GET", "/users/fay/server/progress")
    assert status == 200
    event = json.loads(text.strip().removeprefix("data: "))
    assert event == {
        "progress": 100,
        "ready": True,
        "message": "Server ready at /user/fay/",
        "html_message": 'Server ready at <a href="/user/fay/">/user/fay/</a>',
        "url": "/user/fay/",
    }


async def test_a_server_that_ignores_sigterm_is_killed(spawn_hub: StartHub) -> None:
    hub = await spawn_hub("ignore-term", term_timeout=0.3)
    await hub.user("gus")
    assert (await hub.call("POST", "/users/gus/server"))[0] == 201
    pid = (await hub.server("gus"))["pid"]  # type: ignore[index]
    status, reply = await hub.call("DELETE", "/users/gus/server")
    assert status == 204, reply
    assert not alive(pid)
    stopped = json.loads((await hub.events("server.stopped"))[0]["data"])
    assert stopped["forced"] is True
    assert (await hub.server("gus"))["state"] == "stopped"  # type: ignore[index]


async def test_a_server_that_dies_on_its_own_fails_and_loses_its_route(
    spawn_hub: StartHub,
) -> None:
    hub = await spawn_hub("die", spawner_env={"FAKE_DELAY": "0.5"})
    await hub.user("hal")
    assert (await hub.call("POST", "/users/hal/server"))[0] == 201
    assert "/user/hal/" in await hub.routes()
    await wait_for(lambda: _state(hub, "hal", "failed"), timeout_s=10)
    failed = json.loads((await hub.events("server.failed"))[0]["data"])
    assert failed["reason"] == "the server exited on its own with code 7"
    assert await hub.routes() == {}
    # The failure is committed (with the routes projection) before the proxy reloads its
    # table, so the proxy forgets the route a moment after the state reads "failed".
    await wait_for(lambda: hub.proxy.table.match("/user/hal/api") is hub.proxy.table.default)
    assert (await hub.call("DELETE", "/users/hal/server"))[0] == 400


async def test_a_stopped_server_is_renamed_with_patch(spawn_hub: StartHub) -> None:
    """JupyterHub 6's rename: only while stopped, never onto another server, the default
    server's rename counting against the named-server limit; the activity goes along."""
    hub = await spawn_hub("serve", named_server_limit_per_user=2)
    token = await hub.user("una")
    assert (await hub.call("PUT", "/users/una/servers/lab", token=token))[0] == 201
    assert (await hub.call("POST", "/users/una/servers/lab", token=token))[0] == 201
    status, reply = await hub.call(
        "PATCH", "/users/una/servers/lab", token=token, json={"name": "lab-2"}
    )
    assert status == 409, reply
    assert "running; stop it before renaming it" in reply["message"]
    assert (await hub.call("DELETE", "/users/una/servers/lab", token=token))[0] == 204
    when = datetime(2026, 11, 1, 12, tzinfo=UTC)
    status, _ = await hub.call(
        "POST",
        "/users/una/activity",
        json={"servers": {"lab": {"last_activity": when.isoformat()}}},
    )
    assert status == 200

    status, renamed = await hub.call(
        "PATCH", "/users/una/servers/lab", token=token, json={"name": "lab-2"}
    )
    assert status == 200, renamed
    assert renamed["name"] == "lab-2"
    assert renamed["display_name"] == "lab-2"
    assert renamed["url"] == "/user/una/lab-2/"
    assert datetime.fromisoformat(renamed["last_activity"]) == when
    assert (await hub.call("GET", "/users/una/servers/lab", token=token))[0] == 404
    assert (await hub.call("POST", "/users/una/servers/lab-2", token=token))[0] == 201
    assert list(await hub.routes()) == ["/user/una/lab-2/"]
    assert (await hub.call("DELETE", "/users/una/servers/lab-2", token=token))[0] == 204

    # Onto another server, to a bad name, of a server that does not exist, nothing at all.
    assert (await hub.call("PUT", "/users/una/servers/other", token=token))[0] == 201
    status, reply = await hub.call(
        "PATCH", "/users/una/servers/lab-2", token=token, json={"name": "other"}
    )
    assert (status, reply["message"]) == (409, "Server una/other already exists")
    status, reply = await hub.call(
        "PATCH", "/users/una/servers/lab-2", token=token, json={"name": "Bad_Name"}
    )
    assert (status, reply["message"]) == (400, "Invalid server_name: 'Bad_Name'")
    status, reply = await hub.call(
        "PATCH", "/users/una/servers/nope", token=token, json={"name": "x"}
    )
    assert status == 404, reply
    status, reply = await hub.call("PATCH", "/users/una/servers/lab-2", token=token, json={})
    assert (status, reply["message"]) == (400, "Must specify at least one field to modify.")

    # The default server becomes a named one: over the limit of two, refused.
    assert (await hub.call("POST", "/users/una/server", token=token))[0] == 201
    assert (await hub.call("DELETE", "/users/una/server", token=token))[0] == 204
    status, reply = await hub.call(
        "PATCH", "/users/una/servers/", token=token, json={"name": "main"}
    )
    assert status == 400, reply
    assert "maximum of 2 named servers" in reply["message"]
    status, _ = await hub.call(
        "DELETE", "/users/una/servers/other", token=token, json={"remove": True}
    )
    assert status == 204
    status, main = await hub.call("PATCH", "/users/una/server", token=token, json={"name": "main"})
    assert status == 200, main
    assert main["url"] == "/user/una/main/"
    assert await hub.server("una", "") is None
    renames = await hub.store.pool.fetch(
        "SELECT stream_id, data FROM events WHERE event_type = 'server.renamed'"
        " ORDER BY global_position"
    )
    assert [json.loads(r["data"])["new_name"] for r in renames] == ["lab-2", "main"]
    assert renames[0]["stream_id"].endswith("/lab")  # on the old name's stream


async def test_named_servers_put_patch_start_and_remove(spawn_hub: StartHub) -> None:
    hub = await spawn_hub("serve", named_server_limit_per_user=2)
    token = await hub.user("ivy")
    status, made = await hub.call(
        "PUT", "/users/ivy/servers/lab", token=token, json={"display_name": "My lab"}
    )
    assert status == 201, made
    assert made["name"] == "lab"
    assert made["display_name"] == "My lab"
    assert made["stopped"] is True
    assert made["full_name"] == "ivy/lab"
    assert (await hub.call("PUT", "/users/ivy/servers/lab", token=token))[0] == 409
    status, patched = await hub.call(
        "PATCH", "/users/ivy/servers/lab", token=token, json={"user_options": {"size": "s"}}
    )
    assert status == 200, patched
    assert patched["user_options"] == {"size": "s"}
    assert patched["display_name"] == "My lab"

    status, reply = await hub.call("POST", "/users/ivy/servers/lab", token=token)
    assert status == 201, reply
    routes = await hub.routes()
    assert list(routes) == ["/user/ivy/lab/"]
    async with hub.session.get(hub.proxy_url + "/user/ivy/lab/echo") as response:
        assert (await response.json())["path"] == "/user/ivy/lab/echo"
    env = json.loads((hub.data_dir / "users" / "ivy" / "env.json").read_text())
    assert env["JUPYTERHUB_CLIENT_ID"] == "jupyterhub-user-ivy-lab"
    assert env["JUPYTERHUB_SERVICE_PREFIX"] == "/user/ivy/lab/"
    status, reply = await hub.call(
        "PATCH", "/users/ivy/servers/lab", token=token, json={"display_name": "x"}
    )
    assert status == 409, reply  # running: stop it first
    status, server = await hub.call("GET", "/users/ivy/servers/lab", token=token)
    assert status == 200, server
    api_models.Server.model_validate(server)
    assert server["ready"] is True
    assert "state" not in server

    # Limits and names.
    assert (await hub.call("POST", "/users/ivy/servers/two", token=token))[0] == 201
    status, reply = await hub.call("POST", "/users/ivy/servers/three", token=token)
    assert status == 400, reply
    assert "maximum of 2 named servers" in reply["message"]
    status, reply = await hub.call("POST", "/users/ivy/servers/Bad_Name", token=token)
    assert status == 400
    assert reply["message"] == "Invalid server_name: 'Bad_Name'"
    status, reply = await hub.call("DELETE", "/users/ivy/servers/nope", token=token)
    assert status == 404, reply

    status, reply = await hub.call(
        "DELETE", "/users/ivy/servers/lab", token=token, json={"remove": True}
    )
    assert status == 204, reply
    assert await hub.server("ivy", "lab") is None
    assert (await hub.call("GET", "/users/ivy/servers/lab", token=token))[0] == 404
    types = [t for t in await hub.event_types() if t != "server.spawn_requested"]
    assert "server.removed" in types
    assert "server.defined" in types
    assert "server.modified" in types
    status, reply = await hub.call(
        "DELETE", "/users/ivy/server", token=token, json={"remove": True}
    )
    assert status == 400
    assert reply["message"] == "Cannot delete the default server"


async def test_bad_requests_write_nothing(spawn_hub: StartHub) -> None:
    hub = await spawn_hub("serve", allow_named_servers=False, concurrent_spawn_limit=1)
    token = await hub.user("jo")
    before = await hub.event_types("")
    for body, message in [
        ("[1, 2]", "user_options must be a JSON object, got list"),
        ("{not json", "the body is not valid JSON"),
        ('{"user_options": 5}', "user_options: Input should be a valid dictionary"),
    ]:
        status, reply = await hub.call(
            "POST", "/users/jo/server", token=token, data=body,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        assert status == 400, reply
        assert message in reply["message"], reply
    status, reply = await hub.call("POST", "/users/jo/servers/lab", token=token)
    assert status == 400
    assert reply["message"] == "Named servers are not enabled."
    status, reply = await hub.call("POST", "/users/nobody/server")
    assert status == 404, reply
    # Another user's server: the scope is held, but not on it: 404, as JupyterHub answers.
    other = await hub.user("kim")
    status, reply = await hub.call("POST", "/users/jo/server", token=other)
    assert status == 404, reply
    assert await hub.event_types("server.") == []
    assert len(await hub.event_types("")) == len(before) + 2  # kim and kim's token


async def test_the_concurrent_spawn_limit_is_a_429(spawn_hub: StartHub) -> None:
    hub = await spawn_hub("hang", concurrent_spawn_limit=1, slow_spawn_timeout=0, start_timeout=30)
    await hub.user("lea")
    await hub.user("max")
    assert (await hub.call("POST", "/users/lea/server"))[0] == 202
    status, reply = await hub.call("POST", "/users/max/server")
    assert status == 429, reply
    assert "Too many servers starting" in reply["message"]
    # A pending spawn can be cancelled by stopping it.
    status, reply = await hub.call("DELETE", "/users/lea/server")
    assert status == 204, reply
    assert await hub.event_types() == [
        "server.spawn_requested",
        "server.started",
        "server.stop_requested",
        "server.stopped",
    ]


async def test_activity_reports_reach_the_server(spawn_hub: StartHub) -> None:
    hub = await spawn_hub("serve")
    await hub.user("ned")
    assert (await hub.call("POST", "/users/ned/server"))[0] == 201
    env = json.loads((hub.data_dir / "users" / "ned" / "env.json").read_text())
    stamp = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    status, reply = await hub.call(
        "POST",
        "/users/ned/activity",
        token=env["JUPYTERHUB_API_TOKEN"],
        json={"servers": {"": {"last_activity": stamp}}, "last_activity": stamp},
    )
    assert status == 200, reply
    status, user = await hub.call("GET", "/users/ned")
    assert status == 200, user
    assert user["servers"][""]["last_activity"] == stamp.replace("+00:00", "Z")
    assert user["last_activity"] == stamp.replace("+00:00", "Z")
    status, reply = await hub.call(
        "POST", "/users/ned/activity", json={"servers": {"nope": {"last_activity": stamp}}}
    )
    assert status == 400
    assert reply["message"] == "No such server: 'nope'"


async def test_deleting_a_user_stops_their_server(spawn_hub: StartHub) -> None:
    hub = await spawn_hub("serve")
    await hub.user("oli")
    assert (await hub.call("POST", "/users/oli/server"))[0] == 201
    pid = (await hub.server("oli"))["pid"]  # type: ignore[index]
    status, reply = await hub.call("DELETE", "/users/oli")
    assert status == 204, reply
    assert not alive(pid)
    assert await hub.event_types() == LIFECYCLE
    assert await hub.server("oli") is None


async def test_a_restarted_manager_readopts_live_servers_and_fails_dead_ones(
    spawn_hub: StartHub,
) -> None:
    hub = await spawn_hub("serve")
    for name in ("pat", "quinn"):
        await hub.user(name)
        assert (await hub.call("POST", f"/users/{name}/server"))[0] == 201
    pids = {name: (await hub.server(name))["pid"] for name in ("pat", "quinn")}  # type: ignore[index]
    # The hub process goes away without stopping its servers; quinn's dies meanwhile.
    await hub.manager.close(stop_servers=False)
    os.killpg(pids["quinn"], signal.SIGKILL)
    await wait_for(lambda: not alive(pids["quinn"]), timeout_s=5)

    again = await spawn_hub("serve")
    await again.manager.readopt()
    await again.manager.wait_idle(10)
    assert (await again.server("pat"))["state"] == "ready"  # type: ignore[index]
    quinn = await again.server("quinn")
    assert quinn["state"] == "failed"  # type: ignore[index]
    assert quinn["reason"] == "the hub restarted and the server's process was gone"  # type: ignore[index]
    assert list(await again.routes()) == ["/user/pat/"]
    async with again.session.get(again.proxy_url + "/user/pat/api") as response:
        assert response.status == 200
    # The adopted server is stopped like any other.
    assert (await again.call("DELETE", "/users/pat/server"))[0] == 204
    await wait_for(lambda: not alive(pids["pat"]), timeout_s=5)
    assert (await again.server("pat"))["state"] == "stopped"  # type: ignore[index]


async def test_a_spawn_recorded_without_a_process_fails_at_readoption(
    spawn_hub: StartHub,
) -> None:
    """A hub that died between ``spawn_requested`` and starting the process left no process."""
    hub = await spawn_hub("serve")
    await hub.user("ros")
    async with hub.store.pool.acquire() as conn:
        user_id = await conn.fetchval("SELECT user_id FROM users WHERE name = 'ros'")
    await hub.store.append(
        server_events.stream_id(user_id),
        [server_events.ServerSpawnRequested(user_id=user_id, user="ros")],
    )
    await hub.manager.readopt()
    row = await hub.server("ros")
    assert row is not None
    assert row["state"] == "failed"
    assert row["reason"] == "the hub stopped before the server's process was started"
    assert await hub.event_types() == ["server.spawn_requested", "server.failed"]


async def test_services_with_a_url_are_routed_at_services(spawn_hub: StartHub) -> None:
    async def seen(request: web.Request) -> web.Response:
        return web.Response(text=f"service saw {request.path}")

    service = web.Application()
    service.add_routes([web.get("/services/notes/{tail:.*}", seen)])
    runner = web.AppRunner(service)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        hub = await spawn_hub(
            "serve",
            services=[
                {"name": "operator", "api_token": "spawn-admin-secret-0123456789abcdef"},
                {"name": "notes", "url": f"http://127.0.0.1:{port}"},
            ],
        )
        async with hub.session.get(hub.proxy_url + "/services/notes/today") as response:
            assert response.status == 200
            assert await response.text() == "service saw /services/notes/today"
    finally:
        await runner.cleanup()


class RecordingOAuth:
    """The OAuth seam as a recorder: what was registered, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    async def register(
        self, *, user: str, server_name: str, redirect_uri: str, token_id: str
    ) -> str:
        self.calls.append(("register", user, server_name, redirect_uri, token_id))
        return f"jupyterhub-user-{user}"

    async def unregister(self, *, user: str, server_name: str) -> None:
        self.calls.append(("unregister", user, server_name))


async def test_the_oauth_client_is_registered_at_spawn_and_forgotten_at_stop(
    spawn_hub: StartHub,
) -> None:
    oauth = RecordingOAuth()
    hub = await spawn_hub("serve", oauth=oauth)
    token = await hub.user("uma")
    options = {"profile": "small", "gpus": 0}
    status, reply = await hub.call(
        "POST", "/users/uma/servers/lab", token=token, json={"user_options": options}
    )
    assert status == 201, reply
    requested = json.loads((await hub.events("server.spawn_requested"))[0]["data"])
    assert requested["options"] == options
    token_id = requested["token_id"]
    assert oauth.calls == [
        (
            "register",
            "uma",
            "lab",
            "/user/uma/lab/oauth_callback",
            token_id,
        )
    ]
    status, server = await hub.call("GET", "/users/uma/servers/lab", token=token)
    assert status == 200, server
    assert server["user_options"] == options
    # The token the client's secret is: the server's own, with the server role's scopes and
    # (server_token_projects, on by default) what chronohub project needs in the server.
    async with hub.store.pool.acquire() as conn:
        scopes = await conn.fetchval("SELECT scopes FROM tokens WHERE token_id = $1", token_id)
    assert sorted(scopes) == [
        "access:servers!server=uma/lab",
        "admin:projects!user=uma",
        "users:activity!user=uma",
        "write:projects",
    ]
    assert (await hub.call("DELETE", "/users/uma/servers/lab", token=token))[0] == 204
    assert oauth.calls[-1] == ("unregister", "uma", "lab")


async def _client(hub: SpawnHub, client_id: str) -> asyncpg.Record | None:
    async with hub.store.pool.acquire() as conn:
        return await conn.fetchrow("SELECT * FROM oauth_clients WHERE client_id = $1", client_id)


async def test_the_hubs_provider_knows_a_servers_client_only_while_it_runs(
    spawn_hub: StartHub,
) -> None:
    hub = await spawn_hub("serve")  # no seam handed in: the hub's own provider
    token = await hub.user("vera")
    assert (await hub.call("POST", "/users/vera/servers/lab", token=token))[0] == 201
    requested = json.loads((await hub.events("server.spawn_requested"))[0]["data"])
    client = await _client(hub, "jupyterhub-user-vera-lab")
    assert client is not None
    assert client["kind"] == "server"
    assert client["redirect_uri"] == "/user/vera/lab/oauth_callback"
    assert client["token_id"] == requested["token_id"]  # the secret is the server's token
    assert list(client["allowed_scopes"]) == ["access:servers!server=vera/lab"]
    assert (await hub.call("DELETE", "/users/vera/servers/lab", token=token))[0] == 204
    assert await _client(hub, "jupyterhub-user-vera-lab") is None
    removed = await hub.events("oauth_client.removed")
    assert [json.loads(r["data"])["client_id"] for r in removed] == ["jupyterhub-user-vera-lab"]
    assert "spawner" in removed[0]["actor"]


async def test_a_failed_servers_client_is_removed(spawn_hub: StartHub) -> None:
    hub = await spawn_hub("exit")  # the server exits at once
    token = await hub.user("wes")
    status, _ = await hub.call("POST", "/users/wes/server", token=token)
    assert status == 500
    assert await hub.event_types("oauth_client.") == [
        "oauth_client.registered",
        "oauth_client.removed",
    ]
    assert await _client(hub, "jupyterhub-user-wes") is None


async def test_a_servers_own_token_is_not_its_users_activity(spawn_hub: StartHub) -> None:
    hub = await spawn_hub("serve")
    token = await hub.user("xia")
    assert (await hub.call("POST", "/users/xia/server", token=token))[0] == 201
    env = json.loads((hub.data_dir / "users" / "xia" / "env.json").read_text())
    server_token = env["JUPYTERHUB_API_TOKEN"]

    async def activity() -> tuple[object, object]:
        async with hub.store.pool.acquire() as conn:
            user = await conn.fetchval(
                "SELECT last_activity FROM activity a JOIN users u USING (user_id)"
                " WHERE u.name = 'xia' AND a.server_name = ''"
            )
            own = await conn.fetchval(
                "SELECT last_activity FROM token_activity a JOIN servers s USING (token_id)"
                " WHERE s.user_name = 'xia'"
            )
        return user, own

    before, _ = await activity()  # xia's own token started the server
    assert (await whoami(hub, server_token))[0] == 200
    user_seen, token_seen = await activity()
    assert user_seen == before  # the server's call is not xia's activity...
    assert token_seen is not None  # ...but it is its token's
    assert (await whoami(hub, await hub.user("xia")))[0] == 200  # a new token of xia's
    user_seen, _ = await activity()
    assert user_seen > before  # type: ignore[operator]


async def test_a_user_with_a_running_server_is_not_renamed(spawn_hub: StartHub) -> None:
    """The server was started under /user/<old name>/ and answers only there: renaming its
    user meanwhile would leave it unreachable, so the rename waits for the stop."""
    hub = await spawn_hub("serve")
    await hub.user("wes")
    assert (await hub.call("POST", "/users/wes/server"))[0] == 201
    status, reply = await hub.call("PATCH", "/users/wes", json={"name": "wesley"})
    assert (status, reply["message"]) == (400, "Stop wes's server before renaming wes")
    assert (await hub.call("GET", "/users/wesley"))[0] == 404
    assert "user.renamed" not in await hub.event_types("user.")
    assert (await hub.call("DELETE", "/users/wes/server"))[0] == 204
    status, reply = await hub.call("PATCH", "/users/wes", json={"name": "wesley"})
    assert status == 200, reply
    assert (await hub.call("POST", "/users/wesley/server"))[0] == 201
    assert list(await hub.routes()) == ["/user/wesley/"]
    async with hub.session.get(hub.proxy_url + "/user/wesley/echo") as response:
        assert (await response.json())["path"] == "/user/wesley/echo"
