"""What a sandboxed user's code sees of the hub's secrets, run in a real bubblewrap sandbox.

Deployments keep every secret of the hub in the directory of its configuration file
(``/etc/chronohub``: ``chronohub.env`` with the database's password, ``chronohub.toml`` with
OAuth client secrets), readable by the hub's account, which sandboxed code runs as. The
sandbox binds the system's ``/etc`` whole, so that directory must be covered. The tests put
the configuration directory in another tree the sandbox binds (the hub's Python environment),
so they need neither root nor a directory in ``/etc``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub import settings as hub_settings
from hub.servers import isolation, local_spawner, sandbox

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        shutil.which("bwrap") is None, reason="bubblewrap (Debian: bubblewrap) is not installed"
    ),
]

SECRET = "CHRONOHUB_DATABASE_URL=postgresql://chronohub:pw-4711@localhost/chronohub\n"


@pytest.fixture
def config_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A configuration directory of the hub's own, inside a tree the sandbox binds, holding
    the TOML (``CHRONOHUB_CONFIG``) and the environment file beside it."""
    directory = Path(sys.prefix) / f"chronohub-test-{uuid.uuid4().hex[:8]}"
    directory.mkdir(mode=0o750)
    (directory / "chronohub.toml").write_text("[oauth]\nclient_secret = 'cs-4711'\n")
    (directory / "chronohub.env").write_text(SECRET)
    monkeypatch.setenv(hub_settings.CONFIG_ENV, str(directory / "chronohub.toml"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


def _run(identity: isolation.Identity, code: str) -> subprocess.CompletedProcess[str]:
    command = local_spawner.sandboxed(identity, [sys.executable, "-c", code])
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, check=False, env=dict(os.environ)
    )


def _identity(tmp_path: Path) -> isolation.Identity:
    home = tmp_path / "users" / "mallory"
    home.mkdir(parents=True)
    return isolation.Identity(
        "hub", os.geteuid(), os.getegid(), (), home, "/bin/bash",
        sandboxed=True, inside=Path("/home/mallory"),
    )  # fmt: skip


def test_a_users_code_cannot_read_the_secrets_beside_the_configuration(
    config_dir: Path, tmp_path: Path
) -> None:
    identity = _identity(tmp_path)
    # the attack: a notebook cell reading the hub's environment file, and listing its directory
    for code in (
        f"print(open({str(config_dir / 'chronohub.env')!r}).read())",
        f"print(open({str(config_dir / 'chronohub.toml')!r}).read())",
    ):
        done = _run(identity, code)
        assert done.returncode != 0, done.stdout
        assert "FileNotFoundError" in done.stderr, done.stderr
        assert "4711" not in done.stdout
    listed = _run(identity, f"import os; print(sorted(os.listdir({str(config_dir)!r})))")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.strip() == "[]"  # an empty directory over it
    # the rest of the environment is still there: the sandbox still runs Python
    normal = _run(identity, "import json; print('fine')")
    assert normal.stdout.strip() == "fine", normal.stderr


def test_a_shared_configuration_directory_is_not_hidden_whole(tmp_path: Path) -> None:
    """Only the file is covered where hiding its directory would hide what code needs: the
    system's ``/etc``, ``/``, or a directory holding the hub's environment or the home."""
    assert sandbox.hidden_directory(Path("/etc/chronohub.toml")) is None
    assert sandbox.hidden_directory(Path("/chronohub.toml")) is None
    assert sandbox.hidden_directory(Path(sys.prefix).parent / "chronohub.toml") is None
    home = tmp_path / "users" / "ada"
    assert sandbox.hidden_directory(tmp_path / "chronohub.toml", [home]) is None
    assert sandbox.hidden_directory(Path("/etc/chronohub/chronohub.toml")) == Path("/etc/chronohub")
