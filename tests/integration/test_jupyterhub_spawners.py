"""JupyterHub's own spawner classes, unchanged, through chronohub's adapter
(``hub.servers.jupyterhub_adapter``): the real ``jupyterhub-singleuser`` started by JupyterHub's
``SimpleLocalProcessSpawner`` and ``LocalProcessSpawner``, reached through chronohub's proxy,
found again after a hub restart, and stopped, with the same server events as chronohub's own
spawner records.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyterhub.spawner import LocalProcessSpawner

from tests.helpers import wait_for
from tests.integration.spawn_fixtures import SpawnHub, StartHub

pytestmark = [pytest.mark.integration, pytest.mark.interop]

SINGLEUSER = str(Path(sys.executable).parent / "jupyterhub-singleuser")
# What chronohub's own spawner records for one server's life (tests/integration/test_servers.py).
LIFECYCLE = [
    "server.spawn_requested",
    "server.started",
    "server.ready",
    "server.stop_requested",
    "server.stopped",
]


def simple(tmp_path: Path, **traits: Any) -> dict[str, Any]:
    """Hub settings for ``SimpleLocalProcessSpawner`` running the real jupyterhub-singleuser."""
    args = ["--allow-root"] if os.geteuid() == 0 else []
    return {
        "spawner_class": "simple",
        "spawner_config": {
            "cmd": [SINGLEUSER],
            "args": args,
            "home_dir_template": str(tmp_path / "homes" / "{username}"),
            # the escalation SIGINT → SIGTERM → SIGKILL, short for the tests
            "interrupt_timeout": 2,
            "term_timeout": 2,
            "kill_timeout": 2,
            **traits,
        },
        "start_timeout": 90,
        "slow_spawn_timeout": 90,
        "term_timeout": 10,
    }


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie child of this test process is reaped, and is not)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def started_data(hub: SpawnHub, user: str) -> dict[str, Any]:
    rows = [r for r in await hub.events() if r["event_type"] == "server.started"]
    found: list[dict[str, Any]] = [json.loads(r["data"]) for r in rows]
    return [d for d in found if d["user"] == user][-1]


async def test_simple_spawner_runs_the_real_singleuser_behind_the_proxy(
    spawn_hub: StartHub, tmp_path: Path
) -> None:
    hub = await spawn_hub(**simple(tmp_path))
    token = await hub.user("rita")

    status, reply = await hub.call("POST", "/users/rita/server", token=token)
    assert status == 201, reply
    started = await started_data(hub, "rita")
    pid = started["pid"]
    assert started["spawner_state"] == {"pid": pid}  # LocalProcessSpawner.get_state()
    assert alive(pid)
    async with hub.session.get(
        hub.proxy_url + "/user/rita/api/status", headers={"Authorization": f"token {token}"}
    ) as response:
        assert response.status == 200, await response.text()
        assert "started" in await response.json()

    status, reply = await hub.call("DELETE", "/users/rita/server", token=token)
    assert status == 204, reply
    await wait_for(lambda: not alive(pid), timeout_s=15)
    assert await hub.event_types() == LIFECYCLE
    assert (await hub.server("rita"))["state"] == "stopped"  # type: ignore[index]
    assert await hub.routes() == {}


async def test_a_restarted_hub_resumes_servers_by_spawner_state(
    spawn_hub: StartHub, tmp_path: Path
) -> None:
    hub = await spawn_hub(**simple(tmp_path))
    for name in ("pat", "quinn"):
        await hub.user(name)
        status, reply = await hub.call("POST", f"/users/{name}/server")
        assert status == 201, reply
    pids = {name: (await started_data(hub, name))["pid"] for name in ("pat", "quinn")}
    # The hub goes away without stopping its servers; quinn's dies meanwhile.
    await hub.manager.close(stop_servers=False)
    os.killpg(pids["quinn"], 9)
    await wait_for(lambda: not alive(pids["quinn"]), timeout_s=10)

    again = await spawn_hub(**simple(tmp_path))
    await again.manager.readopt()
    await again.manager.wait_idle(30)
    assert (await again.server("pat"))["state"] == "ready"  # type: ignore[index]
    quinn = await again.server("quinn")
    assert quinn["state"] == "failed"  # type: ignore[index]
    assert quinn["reason"] == "the hub restarted and the server's process was gone"  # type: ignore[index]
    async with again.session.get(again.proxy_url + "/user/pat/api") as response:
        assert response.status == 200
    # The resumed spawner (its state loaded, no Popen handle) stops the server it never started.
    assert (await again.call("DELETE", "/users/pat/server"))[0] == 204
    await wait_for(lambda: not alive(pids["pat"]), timeout_s=15)
    assert (await again.server("pat"))["state"] == "stopped"  # type: ignore[index]
    # The first hub's spawners still hold their Popen handles (a hub that really goes away
    # takes them with it): reaped now that both processes have ended, or their collection
    # would warn "still running" in whichever test ran then
    for live in list(hub.manager._live.values()):
        handle = getattr(getattr(live.process, "spawner", None), "proc", None)
        if handle is not None:
            await asyncio.to_thread(handle.wait, 10)


async def test_the_options_form_is_shown_and_read_by_options_from_form(
    spawn_hub: StartHub, tmp_path: Path
) -> None:
    form = (
        '<label>Flavour <select name="flavour"><option>mild</option>'
        "<option>hot</option></select></label>"
    )
    hub = await spawn_hub(**simple(tmp_path, options_form=form))
    await hub.people("olga")
    browser = hub.browser()
    await browser.login("olga")
    page = await browser.get("/hub/spawn/olga")
    assert page.status == 200, page.text
    assert form in page.text  # as the admin wrote it, not escaped
    page = await browser.post(
        "/hub/spawn/olga",
        data={"_xsrf": page.hidden("_xsrf"), "next": "/hub/home", "flavour": "hot"},
        allow_redirects=False,
    )
    assert page.status in (302, 303), page.text
    requested = [
        json.loads(r["data"])
        for r in await hub.events()
        if r["event_type"] == "server.spawn_requested"
    ]
    # JupyterHub's default options_from_form keeps each field's list of values.
    assert requested[-1]["options"] == {"flavour": ["hot"]}
    assert (await hub.call("DELETE", "/users/olga/server"))[0] in (202, 204)
    await hub.manager.wait_idle(30)


class FailingSpawner(LocalProcessSpawner):  # type: ignore[misc]
    """A spawner whose start raises, as a cluster out of capacity does."""

    async def start(self) -> Any:
        raise RuntimeError("no capacity left in rack 7")


async def test_a_spawner_whose_start_raises_records_failed_with_its_message(
    spawn_hub: StartHub, tmp_path: Path
) -> None:
    hub = await spawn_hub(
        spawner_class=f"{__name__}.FailingSpawner",
        spawner_config={"cmd": [SINGLEUSER]},
        slow_spawn_timeout=30,
    )
    await hub.user("fay")
    status, reply = await hub.call("POST", "/users/fay/server")
    assert status == 500, reply
    assert "no capacity left in rack 7" in reply["message"]
    assert await hub.event_types() == ["server.spawn_requested", "server.failed"]
    row = await hub.server("fay")
    assert row is not None
    assert row["state"] == "failed"
    assert row["reason"] == "RuntimeError: no capacity left in rack 7"


@contextlib.contextmanager
def throwaway_account(name: str) -> Iterator[pwd.struct_passwd]:
    """A system account made for the test with useradd (its home created), removed after."""
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", "--remove", name], check=False, capture_output=True)


def reachable_by(account: pwd.struct_passwd, program: str) -> bool:
    """Whether ``account`` can run ``program`` (every directory on its way open to others)."""
    result = subprocess.run(
        [
            "setpriv",
            f"--reuid={account.pw_uid}",
            f"--regid={account.pw_gid}",
            "--clear-groups",
            program,
            "--version",
        ],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


@pytest.mark.skipif(
    os.geteuid() != 0, reason="LocalProcessSpawner runs servers as system users: needs root"
)
@pytest.mark.skipif(shutil.which("useradd") is None, reason="useradd (passwd) is not installed")
async def test_local_process_spawner_runs_the_server_as_the_users_account(
    spawn_hub: StartHub, tmp_path: Path
) -> None:
    name = "chjhtest"
    with throwaway_account(name) as account:
        if not reachable_by(account, SINGLEUSER):
            pytest.skip(f"{SINGLEUSER} is not reachable by other accounts on this machine")
        hub = await spawn_hub(
            spawner_class="jupyterhub.spawner.LocalProcessSpawner",
            spawner_config={
                "cmd": [SINGLEUSER],
                "interrupt_timeout": 2,
                "term_timeout": 2,
                "kill_timeout": 2,
            },
            start_timeout=90,
            slow_spawn_timeout=90,
        )
        token = await hub.user(name)
        status, reply = await hub.call("POST", f"/users/{name}/server", token=token)
        assert status == 201, reply
        pid = (await started_data(hub, name))["pid"]
        assert os.stat(f"/proc/{pid}").st_uid == account.pw_uid
        async with hub.session.get(
            hub.proxy_url + f"/user/{name}/api/status", headers={"Authorization": f"token {token}"}
        ) as response:
            assert response.status == 200, await response.text()
        assert (await hub.call("DELETE", f"/users/{name}/server", token=token))[0] == 204
        await wait_for(lambda: not alive(pid), timeout_s=15)
        assert await hub.event_types() == LIFECYCLE


def kubernetes_reachable() -> str | None:
    """Why KubeSpawner cannot be tried here, or None."""
    if not os.environ.get("KUBECONFIG"):
        return "KUBECONFIG is not set: no Kubernetes cluster to spawn on"
    try:
        import kubespawner  # noqa: F401
    except ImportError:
        return "kubespawner is not installed"
    return None


def docker_reachable() -> str | None:
    """Why DockerSpawner cannot be tried here, or None."""
    socket = Path(
        os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock").removeprefix("unix://")
    )
    if not socket.exists():
        return f"no Docker socket at {socket}"
    try:
        import dockerspawner  # noqa: F401
    except ImportError:
        return "dockerspawner is not installed"
    return None


@pytest.mark.parametrize(
    ("spawner_class", "why_not", "traits"),
    [
        pytest.param(
            "kubespawner.KubeSpawner",
            kubernetes_reachable,
            {"image": "quay.io/jupyterhub/singleuser:5", "start_timeout": 300},
            id="kubespawner",
        ),
        pytest.param(
            "dockerspawner.DockerSpawner",
            docker_reachable,
            {"image": "quay.io/jupyterhub/singleuser:5", "remove": True},
            id="dockerspawner",
        ),
    ],
)
async def test_cluster_spawners_when_a_cluster_answers(
    spawn_hub: StartHub, spawner_class: str, why_not: Any, traits: dict[str, Any]
) -> None:
    reason = why_not()
    if reason:
        pytest.skip(reason)
    # The server must reach the hub from the cluster: hub_connect_url in the traits, a hub
    # listening beyond loopback. Run by hand where a cluster is at hand (docs/servers.md).
    hub = await spawn_hub(
        spawner_class=spawner_class,
        spawner_config=traits,
        start_timeout=300,
        slow_spawn_timeout=300,
    )
    await hub.user("kim")
    status, reply = await hub.call("POST", "/users/kim/server")
    assert status in (201, 202), reply

    async def ready() -> bool:
        row = await hub.server("kim")
        return row is not None and row["state"] == "ready"

    await wait_for(ready, timeout_s=300, every_s=1)
    assert (await hub.call("DELETE", "/users/kim/server"))[0] in (202, 204)
    await hub.manager.wait_idle(120)
    assert (await hub.event_types())[-1] == "server.stopped"
