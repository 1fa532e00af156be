"""``chronohub serve``'s one public address (the built-in proxy's, routing ``/hub/`` to the
hub's internal address) and its start-up errors: a busy port, an unwritable data directory,
a database out of reach, a renamed setting. Each runs the real command as a process, on
127.0.0.1 and free ports."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from hub import version
from tests.helpers import hub_process_env, service_toml
from tests.integration.browser import PASSWORD, Browser
from tests.integration.spawn_fixtures import fake

pytestmark = pytest.mark.integration

TOKEN = "address-operator-secret-0123456789ab"
CONFIG = f"""
spawner_cmd = {json.dumps(fake("serve"))}
# the fake server writes what it saw into data_dir/users/<name>, as the hub's account
single_user_mode = true
single_user_mode_all_users = true
""" + service_toml(TOKEN, ["admin:users", "admin:servers"])
SERVING = re.compile(r"chronohub serving at (http://127\.0\.0\.1:(\d+)/)hub/$")
HUB = re.compile(r"hub: 127\.0\.0\.1:(\d+) \(internal\), behind the built-in proxy$")


@dataclass
class Serving:
    public: str  # http://127.0.0.1:PORT/
    hub: str  # http://127.0.0.1:PORT/, the hub's internal address
    banner: list[str]
    data_dir: Path


@asynccontextmanager
async def serving(db_url: str, tmp_path: Path) -> AsyncIterator[Serving]:
    """``chronohub serve`` on the test database, both ports free ones; stopped at the end."""
    config = tmp_path / "chronohub.toml"
    config.write_text(CONFIG)
    env = hub_process_env(db_url, config, tmp_path / "state")
    with open(tmp_path / "hub.log", "wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hub.cli", "serve",
            "--ip", "127.0.0.1", "--port", "0", "--hub-port", "0",
            env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=log,
        )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = [
            (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().rstrip("\n")
            for _ in range(3)
        ]
        public, hub = SERVING.match(lines[0]), HUB.match(lines[1])
        assert public, [*lines, (tmp_path / "hub.log").read_text()]
        assert hub, lines
        yield Serving(public[1], f"http://127.0.0.1:{hub[1]}/", lines, tmp_path / "state")
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
    assert proc.returncode == 0, (tmp_path / "hub.log").read_text()


async def test_one_public_address_routes_the_hub_and_the_servers(
    db_url: str, tmp_path: Path
) -> None:
    async with serving(db_url, tmp_path) as hub, aiohttp.ClientSession() as session:
        # The banner: one URL to open (the proxy's), where the hub listens, the database.
        assert sum(line.count("http://") for line in hub.banner) == 1, hub.banner
        assert hub.banner[2].startswith("database: "), hub.banner
        assert hub.public != hub.hub

        async with session.get(hub.public, allow_redirects=False) as response:
            assert response.status == 302
            assert response.headers["Location"] == "/hub/"
        async with session.get(hub.public + "hub/api/") as response:  # through the proxy
            assert response.status == 200
            assert await response.json() == {"version": version.JUPYTERHUB_API}
        async with session.get(hub.hub + "hub/api/") as response:  # and straight to the hub
            assert response.status == 200
            assert response.headers["X-JupyterHub-Version"] == version.JUPYTERHUB_API

        api, auth = hub.public + "hub/api", {"Authorization": f"token {TOKEN}"}
        async with session.post(f"{api}/users/ann", headers=auth) as response:
            assert response.status == 201, await response.text()
        async with session.put(
            f"{api}/users/ann/password", headers=auth, json={"password": PASSWORD}
        ) as response:
            assert response.status == 204, await response.text()
        async with session.post(f"{api}/users/ann/server", headers=auth) as response:
            assert response.status == 201, await response.text()

        # A browser signed in at the public address reaches ann's server there too: the
        # login page, the hub's pages and /user/ann/ on one origin (once a 503).
        browser = Browser(hub.public.rstrip("/"))
        try:
            assert (await browser.login("ann")).status == 302
            assert (await browser.get("/hub/home")).status == 200
            page = await browser.get("/user/ann/echo")
        finally:
            await browser.close()
        assert page.status == 200, page.text
        seen = json.loads(page.text)
        assert seen["path"] == "/user/ann/echo"
        assert seen["headers"]["X-Forwarded-Host"] == hub.public.removeprefix("http://")[:-1]
        assert seen["headers"]["X-Forwarded-For"] == "127.0.0.1"

        # The server calls the hub's API at the hub's own address, as in JupyterHub.
        env = json.loads((hub.data_dir / "users" / "ann" / "env.json").read_text())
        assert env["JUPYTERHUB_API_URL"] == hub.hub + "hub/api"


async def run_serve(env: dict[str, str], cwd: Path, *options: str) -> tuple[int, str, str]:
    """``chronohub serve OPTIONS`` expected to refuse to start: status, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", "serve", "--ip", "127.0.0.1", *options,
        env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:  # it started after all: stop it, and the test fails
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@contextmanager
def busy_port() -> Iterator[int]:
    """A port of 127.0.0.1 something listens on."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        yield taken.getsockname()[1]


def the_one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("which", "setting", "option"),
    [("public", "port = 8010", "--port 8010"), ("hub", "hub_port = 8091", "--hub-port 8091")],
)
async def test_a_busy_port_is_one_line_naming_it(
    db_url: str, tmp_path: Path, which: str, setting: str, option: str
) -> None:
    env = hub_process_env(db_url, tmp_path / "none.toml", tmp_path / "state")
    with busy_port() as port:
        ports = ("--port", str(port), "--hub-port", "0")
        if which == "hub":
            ports = ("--port", "0", "--hub-port", str(port))
        code, out, err = await run_serve(env, tmp_path, *ports)
    assert code == 2, err
    assert out == ""
    line = the_one_line(err)
    assert f"port {port} " in line
    assert ("hub's internal address" in line) == (which == "hub")
    assert setting in line
    assert option in line
    assert f'make run ARGS="{option}"' in line


async def test_an_unwritable_data_directory_is_one_line(db_url: str, tmp_path: Path) -> None:
    # A directory below a file: unwritable even for root, who may run the tests.
    (tmp_path / "a-file").write_text("")
    data_dir = tmp_path / "a-file" / "state"
    env = hub_process_env(db_url, tmp_path / "none.toml", data_dir)
    code, _, err = await run_serve(env, tmp_path, "--port", "0", "--hub-port", "0")
    assert code == 2, err
    line = the_one_line(err)
    assert str(data_dir) in line
    assert "not writable" in line
    assert "data_dir" in line


async def test_a_spawner_command_that_is_not_installed_is_one_line(
    db_url: str, tmp_path: Path
) -> None:
    (tmp_path / "chronohub.toml").write_text('spawner_cmd = ["no-such-singleuser"]\n')
    env = hub_process_env(db_url, tmp_path / "chronohub.toml", tmp_path / "state")
    code, _, err = await run_serve(env, tmp_path, "--port", "0", "--hub-port", "0")
    assert code == 2, err
    line = the_one_line(err)
    assert "'no-such-singleuser' is not installed" in line
    assert "pip install jupyterhub jupyterlab" in line


async def test_a_database_out_of_reach_is_one_line(tmp_path: Path) -> None:
    with busy_port() as port:  # bound, never listened to as PostgreSQL: then closed
        pass
    url = f"postgresql://chronohub:secret-password@127.0.0.1:{port}/chronohub"
    env = hub_process_env(url, tmp_path / "none.toml", tmp_path / "state")
    code, _, err = await run_serve(env, tmp_path, "--port", "0", "--hub-port", "0")
    assert code == 2, err
    line = the_one_line(err)
    assert "could not reach PostgreSQL" in line
    assert f"127.0.0.1:{port}" in line
    assert "secret-password" not in line


@pytest.mark.parametrize(
    ("old", "new"), [("bind_ip", "hub_ip"), ("proxy_ip", "ip"), ("proxy_port", "port")]
)
async def test_an_old_setting_name_is_refused_naming_the_new_one(
    db_url: str, tmp_path: Path, old: str, new: str
) -> None:
    config = tmp_path / "chronohub.toml"
    config.write_text(f"{old} = {'8001' if 'port' in old else json.dumps('127.0.0.1')}\n")
    env = hub_process_env(db_url, config, tmp_path / "state")
    code, _, err = await run_serve(env, tmp_path, "--port", "0", "--hub-port", "0")
    assert code == 2, err
    line = the_one_line(err)
    assert f"{old} (CHRONOHUB_{old.upper()}) was renamed: use {new} " in line
