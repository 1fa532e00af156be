"""Users' code never runs with the hub's privileges: attacks, tried as a hostile user would.

A real ``chronohub serve``, started as ``make run`` starts it (its own embedded PostgreSQL in a
fresh data directory) by root, spawns the real ``jupyterhub-singleuser`` (JupyterLab) for two
ordinary users, alice and bob, each as a system account of their own (``jupyter-alice``,
``jupyter-bob``). Then alice, from everywhere her code runs — a JupyterLab terminal reached
through the proxy (a shell, a subprocess of her server in its environment), a kernel of her own
server, and the kernel of a shared execution session she creates through the REST API — runs
``tests/security/attack.py``: read the cookie secret, the database password and the hub's logs,
read ``/proc/<hub pid>/environ``, connect to PostgreSQL on its socket and on 127.0.0.1, read
bob's home, signal the hub and bob's server. Every attempt must be refused.

Root is needed to run code as other accounts; CI runs as root. Run as another account, these
tests are skipped with that reason.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil
import pytest
import pytest_asyncio

from tests import helpers
from tests.helpers import service_toml, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.collab,
    pytest.mark.interop,
    pytest.mark.skipif(
        os.geteuid() != 0, reason="runs users' code as their own system accounts, which needs root"
    ),
]

OPERATOR_TOKEN = "isolation-operator-0123456789abcdef01"
ATTACK = Path(__file__).resolve().parent.parent / "security" / "attack.py"
SERVING = re.compile(r"chronohub serving at (http://127\.0\.0\.1:\d+/hub/)")
CONFIG = """
start_timeout = 120
slow_spawn_timeout = 1
""" + service_toml(OPERATOR_TOKEN, ["admin:users", "admin:servers", "tokens", "read:hub"])
# What a user's code must never see in its environment.
HUB_VARIABLES = re.compile(r"^(CHRONOHUB_|PG|DATABASE_URL|COOKIE)")
# The ordinary account a hub that is not root runs as, in the sandbox tests.
HUB_ACCOUNT = "chronohub-test-hub"


def hub_account() -> pwd.struct_passwd:
    """The ordinary account for a hub that is not root (created once, a system account)."""
    try:
        return pwd.getpwnam(HUB_ACCOUNT)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        subprocess.run([useradd, "--system", HUB_ACCOUNT], check=True)
        return pwd.getpwnam(HUB_ACCOUNT)


@dataclass
class Hub:
    """The running hub, its data directory, and what the tests need to talk to it."""

    mode: str  # "system_users" (root) or "sandbox" (an ordinary account, bubblewrap)
    process: asyncio.subprocess.Process
    url: str  # http://127.0.0.1:PORT/hub/, through the proxy
    proxy: str  # http://127.0.0.1:PORT/, the public address
    root: Path  # the data directory's parent: the hub's log
    config_dir: Path  # the configuration file's directory, with the hub's secrets beside it
    session: aiohttp.ClientSession
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.root / "state"

    def account(self, user: str) -> pwd.struct_passwd:
        """The account ``user``'s code runs as."""
        return pwd.getpwnam(f"jupyter-{user}" if self.mode == "system_users" else HUB_ACCOUNT)

    def home(self, user: str) -> Path:
        if self.mode == "system_users":
            return Path(self.account(user).pw_dir)
        return self.data_dir / "users" / user

    def seen_home(self, user: str) -> Path:
        """Where ``user``'s code sees its home (in a sandbox: /home/<name>)."""
        return Path("/home") / user if self.mode == "sandbox" else self.home(user)

    def server(self, user: str) -> psutil.Process:
        """``user``'s single-user server process."""
        for proc in psutil.process_iter(["cmdline", "environ"]):
            cmdline = proc.info["cmdline"] or []
            environ = proc.info["environ"] or {}
            if (
                environ.get("JUPYTERHUB_USER") == user
                and any("jupyterhub-singleuser" in part for part in cmdline)
                and not cmdline[0].endswith("bwrap")  # the sandbox around it
            ):
                return proc
        raise AssertionError(f"no server of {user} runs")

    def give(self, user: str, path: Path, text: str, mode: int = 0o644) -> Path:
        """A file of ``user``'s, in their home."""
        path.write_text(text)
        account = self.account(user)
        os.chown(path, account.pw_uid, account.pw_gid)
        path.chmod(mode)
        return path

    async def call(
        self, method: str, path: str, token: str = OPERATOR_TOKEN, **kwargs: Any
    ) -> tuple[int, Any]:
        async with self.session.request(
            method, self.url + "api" + path, headers={"Authorization": f"token {token}"}, **kwargs
        ) as response:
            text = await response.text()
            return response.status, json.loads(text) if text else None


def _log(hub: Hub) -> str:
    path = hub.root / "hub.log"
    return path.read_text()[-3000:] if path.exists() else ""


async def _start_server(hub: Hub, user: str) -> None:
    status, reply = await hub.call("POST", f"/users/{user}/server")
    assert status in (201, 202), reply

    async def ready() -> bool:
        status, model = await hub.call("GET", f"/users/{user}")
        assert status == 200, model
        server = model["servers"].get("")
        assert server is not None, (model, _log(hub))  # it failed: the log says why
        return bool(server["ready"])

    await wait_for(ready, timeout_s=120, every_s=0.5)


def _serve_command(mode: str) -> list[str]:
    command = [sys.executable, "-m", "hub.cli", "serve", "--port", "0", "--hub-port", "0"]
    if mode == "system_users":
        return command
    account = hub_account()
    setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
    return [setpriv, f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}",
            "--clear-groups", "--", *command]  # fmt: skip


EXPECTED_MODE = {
    "system_users": "their own system account (jupyter-<name>)",
    "sandbox": "in a sandbox of its own (bubblewrap)",
}


@pytest_asyncio.fixture(scope="module", loop_scope="session", params=list(EXPECTED_MODE))
async def hub(request: pytest.FixtureRequest) -> AsyncIterator[Hub]:
    """``chronohub serve`` on a fresh data directory, alice's and bob's servers up: as root
    (each user's own system account), or as an ordinary account (bubblewrap sandboxes)."""
    mode: str = request.param
    if mode == "sandbox" and shutil.which("bwrap") is None:
        pytest.fail(
            "bubblewrap is not installed: make test installs it (apt-get install bubblewrap)"
        )
    root = Path(tempfile.mkdtemp(prefix="chronohub-isolation-"))
    root.chmod(0o711)  # the database's account passes through to the data directory
    # The configuration's directory, as /etc/chronohub of the deployments: the TOML and the
    # environment file with the database's password, readable by the hub's account. For the
    # sandbox, in a tree it binds (the hub's environment, standing for /etc).
    config_dir = root / "config"
    if mode == "sandbox":
        config_dir = Path(sys.prefix) / f"chronohub-isolation-config-{root.name}"
    config_dir.mkdir(mode=0o700)
    config = config_dir / "chronohub.toml"
    config.write_text(CONFIG)
    secrets = config_dir / "chronohub.env"
    secrets.write_text("CHRONOHUB_DATABASE_URL=postgresql://hub:isolation-pw@localhost/hub\n")
    for path in (config, secrets):
        path.chmod(0o600)  # it holds a token: an admin keeps it from other accounts
    if mode == "sandbox":
        account = hub_account()
        (root / "state").mkdir(mode=0o700)
        for path in (root / "state", config_dir, config, secrets):
            os.chown(path, account.pw_uid, account.pw_gid)
    env = helpers.hub_base_env()
    env |= {"CHRONOHUB_CONFIG": str(config), "CHRONOHUB_DATA_DIR": str(root / "state")}
    if mode == "sandbox":
        env["HOME"] = str(root / "state")
    with open(root / "hub.log", "wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *_serve_command(mode),
            env=env, cwd=root / "state" if mode == "sandbox" else root,
            stdout=asyncio.subprocess.PIPE, stderr=log,
        )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = [(await asyncio.wait_for(proc.stdout.readline(), 90)).decode() for _ in "abcd"]
        public = SERVING.match(lines[0])
        assert public, [*lines, (root / "hub.log").read_text()]
        assert EXPECTED_MODE[mode] in lines[3], lines
        async with aiohttp.ClientSession() as session:
            running = Hub(
                mode, proc, public[1], public[1].removesuffix("hub/"), root, config_dir, session
            )
            for user in ("alice", "bob"):
                status, reply = await running.call("POST", f"/users/{user}")
                assert status == 201, reply
                status, reply = await running.call("POST", f"/users/{user}/tokens", json={})
                assert status == 201, reply
                running.tokens[user] = reply["token"]
            await asyncio.gather(_start_server(running, "alice"), _start_server(running, "bob"))
            # Something of bob's for alice to go after, readable by all, inside bob's home;
            # and the attack, inside alice's (the only place a sandbox of hers can see).
            running.give("bob", running.home("bob") / "notes.txt", "bob's private notes")
            running.give("alice", running.home("alice") / "attack.py", ATTACK.read_text())
            yield running
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 60)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(config_dir, ignore_errors=True)


def targets(hub: Hub) -> dict[str, Any]:
    """Everything alice must not reach."""
    data = hub.data_dir
    bob_server = hub.server("bob").pid
    return {
        "read": [
            str(data / "cookie_secret"),
            str(data / "db_password"),
            str(data / "postgres" / "PG_VERSION"),
            str(data / "postgres" / "log"),
            str(data / "logs" / "bob.log"),
            str(data / "logs" / "alice.log"),
            str(hub.config_dir / "chronohub.toml"),
            # beside it, as in /etc/chronohub: the database's password (a notebook cell's
            # open('/etc/chronohub/chronohub.env'))
            str(hub.config_dir / "chronohub.env"),
            f"/proc/{hub.process.pid}/environ",
            f"/proc/{bob_server}/environ",
            str(hub.home("bob") / "notes.txt"),
        ],
        "list": [str(data), str(data / "postgres"), str(hub.home("bob"))],
        "unix": [str(data / "run" / ".s.PGSQL.5432")],
        "tcp": [["127.0.0.1", 5432]],
        "signal": [hub.process.pid, bob_server],
    }


async def attack(hub: Hub, run: Any, name: str) -> dict[str, Any]:
    """Write the targets into alice's home, have ``run(command_args, report_path)`` start the
    attack as her, and wait for its report there."""
    home, seen = hub.home("alice"), hub.seen_home("alice")
    aimed = targets(hub)
    hub.give("alice", home / f"targets-{name}.json", json.dumps(aimed))
    out = home / f"attack-{name}.json"
    out.unlink(missing_ok=True)  # an earlier run's report must not pass for this one's
    await run([str(seen / "attack.py"), str(seen / f"targets-{name}.json"), out.name], out)
    await wait_for(out.exists, timeout_s=90, every_s=0.2)
    await wait_for(lambda: out.read_text().endswith("}"), timeout_s=10)
    report: dict[str, Any] = json.loads(out.read_text())
    assert len(report["results"]) == sum(len(each) for each in aimed.values()), report
    return report


def assert_refused(hub: Hub, report: dict[str, Any]) -> None:
    account = hub.account("alice")
    assert report["account"] == account.pw_name
    assert 0 not in report["groups"]  # nothing of root's
    if hub.mode == "system_users":
        assert report["groups"] == [account.pw_gid]
    assert not [name for name in report["env"] if HUB_VARIABLES.match(name)], report["env"]
    opened = {
        what: result
        for what, result in report["results"].items()
        if not result.startswith("refused")
    }
    assert not opened, opened


# --- where alice's code runs ------------------------------------------------------------------


async def run_in_terminal(hub: Hub, args: list[str], out: Path) -> None:
    """A JupyterLab terminal of alice's server, through the proxy: a shell in its environment."""
    headers = {"Authorization": f"token {hub.tokens['alice']}"}
    base = hub.proxy + "user/alice/"
    async with hub.session.post(base + "api/terminals", headers=headers) as response:
        assert response.status == 200, await response.text()
        name = (await response.json())["name"]
    ws_url = base.replace("http", "ws", 1) + f"terminals/websocket/{name}"
    async with hub.session.ws_connect(ws_url, headers=headers) as ws:
        await ws.send_str(json.dumps(["stdin", "python3 " + " ".join(args) + "\r"]))
        await wait_for(out.exists, timeout_s=60, every_s=0.2)


def _kernel_message(code: str) -> dict[str, Any]:
    return {
        "header": {"msg_id": uuid.uuid4().hex, "msg_type": "execute_request", "username": "alice",
                   "session": uuid.uuid4().hex, "date": "", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False},
    }  # fmt: skip


def _run_code(args: list[str]) -> str:
    return (
        f"import runpy, sys; sys.argv = {args!r}; runpy.run_path({args[0]!r}, run_name='__main__')"
    )


async def run_in_server_kernel(hub: Hub, args: list[str], out: Path) -> None:
    """A kernel of alice's own server (what a notebook in her JupyterLab runs in)."""
    headers = {"Authorization": f"token {hub.tokens['alice']}"}
    base = hub.proxy + "user/alice/"
    async with hub.session.post(base + "api/kernels", headers=headers, json={}) as response:
        assert response.status == 201, await response.text()
        kernel = (await response.json())["id"]
    ws_url = base.replace("http", "ws", 1) + f"api/kernels/{kernel}/channels"
    async with hub.session.ws_connect(ws_url, headers=headers) as ws:
        await ws.send_json(_kernel_message(_run_code(args)))
        await wait_for(out.exists, timeout_s=60, every_s=0.2)


async def run_in_session_kernel(hub: Hub, args: list[str], out: Path) -> None:
    """The kernel of a shared execution session alice (no admin, the default role) creates."""
    token = hub.tokens["alice"]
    notebook = {
        "nbformat": 4, "nbformat_minor": 5, "metadata": {},
        "cells": [{"id": "attack", "cell_type": "code", "source": _run_code(args),
                   "metadata": {}, "outputs": [], "execution_count": None}],
    }  # fmt: skip
    status, reply = await hub.call(
        "POST", "/collab/sessions", token=token, json={"notebook": notebook, "room": "attack"}
    )
    assert status == 201, (reply, _log(hub))
    expected = "jupyter-alice" if hub.mode == "system_users" else f"{HUB_ACCOUNT} (sandboxed)"
    assert reply["runs_as"] == expected
    hub.tokens["session"] = reply["id"]
    status, reply = await hub.call(
        "POST", f"/collab/sessions/{reply['id']}/execute", token=token, json={"cell_id": "attack"}
    )
    assert status == 202, reply


# --- the attacks ------------------------------------------------------------------------------


async def test_alices_server_runs_apart_with_nothing_of_the_hubs(hub: Hub) -> None:
    server = hub.server("alice")
    account = hub.account("alice")
    assert server.uids().real == account.pw_uid
    assert server.gids().real == account.pw_gid
    assert "--allow-root" not in server.cmdline()
    environ = Path(f"/proc/{server.pid}/environ").read_bytes().split(b"\0")
    names = sorted(item.split(b"=", 1)[0].decode() for item in environ if item)
    assert not [name for name in names if HUB_VARIABLES.match(name)], names
    assert {"JUPYTERHUB_API_TOKEN", "JUPYTERHUB_USER", "HOME"} <= set(names)
    home = hub.home("alice")
    assert oct(home.stat().st_mode & 0o777) == "0o700"
    assert server.cwd() == str(hub.seen_home("alice"))
    if hub.mode == "sandbox":  # inside bubblewrap, in a PID namespace of its own
        parent = server.parent()
        assert parent is not None
        assert parent.cmdline()[0].endswith("bwrap")
        assert (
            Path(f"/proc/{server.pid}/ns/pid").readlink()
            != Path(f"/proc/{hub.process.pid}/ns/pid").readlink()
        )


async def test_from_a_terminal_of_her_server_every_attack_is_refused(hub: Hub) -> None:
    report = await attack(hub, lambda args, out: run_in_terminal(hub, args, out), "terminal")
    assert_refused(hub, report)


async def test_from_a_kernel_of_her_server_every_attack_is_refused(hub: Hub) -> None:
    report = await attack(hub, lambda args, out: run_in_server_kernel(hub, args, out), "kernel")
    assert_refused(hub, report)


async def test_from_a_session_kernel_every_attack_is_refused(hub: Hub) -> None:
    """The attack this work began with: a non-admin user's shared session read the hub's
    cookie secret (its kernel ran as the hub). Now it runs as her, or in a sandbox of hers,
    and cannot."""
    report = await attack(hub, lambda args, out: run_in_session_kernel(hub, args, out), "session")
    # Root: her account may not read it; sandboxed: it is not there at all.
    why = "PermissionError" if hub.mode == "system_users" else "FileNotFoundError"
    assert report["results"][f"read {hub.data_dir / 'cookie_secret'}"].startswith(f"refused: {why}")
    assert_refused(hub, report)


async def test_the_log_names_whose_account_a_session_runs_as_and_who_ran_what(hub: Hub) -> None:
    url = f"postgresql://postgres:{(hub.data_dir / 'db_password').read_text()}@/postgres"
    conn = await asyncpg.connect(url, host=str(hub.data_dir / "run"))
    try:
        rows = await conn.fetch(
            "SELECT event_type, data, actor FROM events WHERE event_type LIKE 'collab_session.%'"
            " ORDER BY global_position"
        )
    finally:
        await conn.close()
    created = [row for row in rows if row["event_type"] == "collab_session.created"]
    assert created, rows
    runs_as = json.loads(created[-1]["data"])["runs_as"]
    assert runs_as == (
        "jupyter-alice" if hub.mode == "system_users" else f"{HUB_ACCOUNT} (sandboxed)"
    )
    requested = [row for row in rows if row["event_type"] == "collab_session.execution_requested"]
    assert requested, [row["event_type"] for row in rows]
    assert all("alice" in str(row["actor"]) for row in requested)


async def test_the_database_wants_a_password_even_from_root(hub: Hub) -> None:
    with pytest.raises(asyncpg.PostgresError, match="password"):
        await asyncpg.connect("postgresql://postgres@/postgres", host=str(hub.data_dir / "run"))


async def test_a_hub_that_is_not_root_nor_sandboxes_runs_nobodys_code() -> None:
    """Started by an ordinary account with no sandbox (sandbox = false, or no bubblewrap), the
    hub cannot keep users apart: without single_user_mode it says so at start-up and refuses
    every server, admins' included."""
    entry = hub_account()
    root = Path(tempfile.mkdtemp(prefix="chronohub-nonroot-"))
    try:
        root.chmod(0o711)
        state = root / "state"
        state.mkdir(mode=0o700)
        os.chown(state, entry.pw_uid, entry.pw_gid)
        (root / "chronohub.toml").write_text('proxy = "none"\nsandbox = false\n' + CONFIG)
        (root / "chronohub.toml").chmod(0o644)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CHRONOHUB_", "PG"))}
        env.pop("DATABASE_URL", None)
        env |= {
            "CHRONOHUB_CONFIG": str(root / "chronohub.toml"),
            "CHRONOHUB_DATA_DIR": str(state),
            "HOME": str(state),
        }
        setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
        proc = await asyncio.create_subprocess_exec(
            setpriv, f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups", "--",
            sys.executable, "-m", "hub.cli", "serve", "--hub-port", "0",
            env=env, cwd=state, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            lines = [(await asyncio.wait_for(proc.stdout.readline(), 90)).decode() for _ in "abcd"]
            url = SERVING.match(lines[0])
            assert url, lines
            assert "servers and kernels are OFF: the hub is not root" in lines[3], lines
            async with aiohttp.ClientSession() as session:
                headers = {"Authorization": f"token {OPERATOR_TOKEN}"}
                async with session.post(url[1] + "api/users/carol", headers=headers) as response:
                    assert response.status == 201, await response.text()
                async with session.post(
                    url[1] + "api/users/carol/server", headers=headers
                ) as response:
                    assert response.status == 403
                    assert "not root" in (await response.json())["message"]
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 60)
    finally:
        shutil.rmtree(root, ignore_errors=True)
