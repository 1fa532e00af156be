"""The spawner's command, found at start-up: in the hub's own environment, then on PATH."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from hub import data_dir
from hub.servers import isolation, local_spawner, spawner


def test_a_bare_name_is_found_beside_the_hub_first() -> None:
    # jupyterhub-singleuser is installed with the hub, in the interpreter's bin directory,
    # which is not necessarily on PATH (`make run` does not activate the venv).
    found = local_spawner.resolve_command(["jupyterhub-singleuser", "--debug"])
    assert found == (str(Path(sys.executable).parent / "jupyterhub-singleuser"), "--debug")


def test_then_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    program = tmp_path / "my-singleuser"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert local_spawner.resolve_command(["my-singleuser"]) == (str(program),)


def test_a_missing_command_says_what_to_install() -> None:
    with pytest.raises(spawner.SystemFailure, match=r"not installed.*pip install jupyterhub"):
        local_spawner.resolve_command(["no-such-singleuser-program"])
    with pytest.raises(spawner.SystemFailure, match="not an executable file"):
        local_spawner.resolve_command(["/nonexistent/jupyterhub-singleuser"])


def test_a_closed_directory_on_the_way_is_named(reachable_tmp: Path) -> None:
    closed = reachable_tmp / "closed"
    closed.mkdir(mode=0o700)
    closed.chmod(0o700)
    inside = closed / "bin"
    inside.mkdir()
    script = inside / "server"
    script.write_text("#!/usr/bin/env python3\n")
    script.chmod(0o755)
    assert local_spawner.closed_to_users(str(script)) == closed
    assert data_dir.closed_to_others(script) == closed


def test_an_interpreter_out_of_reach_is_named(reachable_tmp: Path) -> None:
    hidden = reachable_tmp / "hidden"
    hidden.mkdir()
    hidden.chmod(0o700)
    script = reachable_tmp / "server"
    script.write_text(f"#!{hidden}/python3 -u\nprint('hi')\n")
    script.chmod(0o755)
    assert local_spawner.closed_to_users(str(script)) == hidden
    script.write_text("#!/bin/sh\necho hi\n")
    assert local_spawner.closed_to_users(str(script)) is None


def test_as_an_account_through_setpriv() -> None:
    identity = isolation.Identity("jupyter-ada", 1001, 1002, (1002, 1003), Path("/h"), "/bin/sh")
    command = local_spawner.as_account(identity, ["jupyterhub-singleuser", "--x"])
    assert command[0].endswith("setpriv")
    assert command[1:] == [
        "--reuid=1001", "--regid=1002", "--groups=1002,1003", "--",
        "jupyterhub-singleuser", "--x",
    ]  # fmt: skip
    alone = isolation.Identity("jupyter-ada", 1001, 1002, (), Path("/h"), "/bin/sh")
    assert "--clear-groups" in local_spawner.as_account(alone, ["x"])
    assert os.path.isabs(command[0])
