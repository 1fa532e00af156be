"""``chronohub project`` in the terminals of two real ``jupyterhub-singleuser`` servers that
chronohub spawned: each run with its server's own environment (``JUPYTERHUB_API_URL`` and the
server's ``JUPYTERHUB_API_TOKEN``, read from the spawned process), as a person typing in
JupyterLab's terminal would. alice pushes to team physics, bob (a member) checks out, they
edit different cells and both edits survive; then the same cell, and bob picks theirs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.integration.client_cli import Person, edit_cell, notebook, sources
from tests.integration.spawn_fixtures import CONFIG, SpawnHub, StartHub

pytestmark = [pytest.mark.integration, pytest.mark.interop]

SINGLEUSER = str(Path(sys.executable).parent / "jupyterhub-singleuser")


def _environment(pid: int) -> dict[str, str]:
    """The environment the spawner gave a process (Linux)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


async def in_server(hub: SpawnHub, name: str, home: Path) -> Person:
    """Start ``name``'s server; a Person typing in its terminal (its JUPYTERHUB_* variables)."""
    token = await hub.user(name)
    status, reply = await hub.call("POST", f"/users/{name}/server", token=token)
    assert status == 201, reply
    row = await hub.server(name)
    assert row is not None
    given = {k: v for k, v in _environment(row["pid"]).items() if k.startswith("JUPYTERHUB_")}
    assert given["JUPYTERHUB_API_TOKEN"] != token  # the server's own token, not the user's
    return Person(home, None, None, extra=given)


async def test_two_servers_share_a_notebook_through_the_hub(
    spawn_hub: StartHub, tmp_path: Path
) -> None:
    operator = CONFIG["roles"][0]
    hub = await spawn_hub(
        command=[SINGLEUSER],
        spawner_args=["--allow-root"] if os.geteuid() == 0 else [],
        start_timeout=90,
        slow_spawn_timeout=90,
        term_timeout=10,
        roles=[{**operator, "scopes": [*operator["scopes"], "admin:groups"]}],
    )
    alice = await in_server(hub, "alice", tmp_path / "alice")
    bob = await in_server(hub, "bob", tmp_path / "bob")
    assert (await hub.call("POST", "/groups/physics"))[0] == 201
    status, reply = await hub.call("POST", "/groups/physics/users", json={"users": ["bob"]})
    assert status == 200, reply

    work = alice.home / "lab"
    work.mkdir(parents=True)
    (work / "waves.ipynb").write_bytes(notebook("a = 1", "b = 2"))
    await alice.ok("project", "push", "--team", "physics", "--write", cwd=work)
    shared = (await bob.ok("project", "list", "--shared", "--json")).json()["projects"]
    assert [p["name"] for p in shared] == ["alice/lab"]
    copy = Path((await bob.ok("project", "checkout", "alice/lab", "--json")).json()["path"])

    # different cells: both kept
    edit_cell(copy / "waves.ipynb", 1, "b = 'bob'")
    await bob.ok("project", "push", cwd=copy)
    edit_cell(work / "waves.ipynb", 0, "a = 'alice'")
    await alice.ok("project", "pull", cwd=work)
    assert sources(work / "waves.ipynb") == ["a = 'alice'", "b = 'bob'"]
    await alice.ok("project", "push", cwd=work)

    # the same cell: bob's pull stops with the tree untouched, --pick theirs finishes it
    edit_cell(copy / "waves.ipynb", 0, "a = 'bob again'")
    before = (copy / "waves.ipynb").read_bytes()
    edit_cell(work / "waves.ipynb", 0, "a = 'alice again'")
    await alice.ok("project", "push", cwd=work)
    stopped = await bob("project", "pull", cwd=copy)
    assert stopped.code == 1, stopped.err
    assert "waves.ipynb" in stopped.err
    assert "chronohub project pull --pick-file waves.ipynb=theirs" in stopped.err
    assert (copy / "waves.ipynb").read_bytes() == before
    await bob.ok("project", "pull", "--pick", "theirs", cwd=copy)
    assert sources(copy / "waves.ipynb") == ["a = 'alice again'", "b = 'bob'"]

    for name in ("alice", "bob"):
        assert (await hub.call("DELETE", f"/users/{name}/server"))[0] == 204
