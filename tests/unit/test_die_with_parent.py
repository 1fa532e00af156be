"""A hub's own child (a snapshot's replay) ends when the hub does, even by SIGKILL
(``hub.processes.die_with_parent``), and refuses to start for a hub already gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import wait_for

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux's"
)

# The parent starts the child, writes its pid, and waits; the child asks to die with it.
CHILD = (
    "import os, sys, time; from hub import processes; "
    "processes.die_with_parent(int(sys.argv[1])); "
    "open(sys.argv[2], 'w').write(str(os.getpid())); time.sleep(600)"
)
PARENT = (
    "import os, subprocess, sys, time; "
    "subprocess.Popen([sys.executable, '-c', sys.argv[1], str(os.getpid()), sys.argv[2]]); "
    "time.sleep(600)"
)


def _gone(pid: int) -> bool:
    """No such process, or only its zombie (killed, not yet reaped by its new parent)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


async def test_the_child_dies_when_its_parent_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD, str(pid_file)])
    try:
        await wait_for(lambda: pid_file.exists() and pid_file.read_text() != "", timeout_s=30)
        child = int(pid_file.read_text())
        assert not _gone(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        await wait_for(lambda: _gone(child), timeout_s=10)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_a_parent_already_gone_is_refused() -> None:
    # In a process of its own (the signal would stay set on this one). pid 1 did not start it:
    # the check after prctl fails.
    done = subprocess.run(
        [sys.executable, "-c", "from hub import processes; processes.die_with_parent(1)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "ParentGone: the process that started this one (1) has ended" in done.stderr


def test_the_snapshot_command_refuses_a_parent_already_gone() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hub.cli", "projections", "snapshot", "--parent-pid", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "CHRONOHUB_DATABASE_URL": "postgresql://127.0.0.1:1/none"},
    )
    assert done.returncode == 1
    assert "the process that started this one (1) has ended" in done.stderr
