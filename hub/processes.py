"""Child processes in their own process group: start one with an environment and a log file,
signal its group, wait for it, stop it (SIGTERM, then SIGKILL after a grace period).

Shared by the local spawner (``hub.servers.local_spawner``: users' servers) and the service
supervisor (``hub.services.supervisor``: managed services), which run their processes the same
way. A process is started in a new session (``start_new_session``), so the hub's own signals
(a Ctrl-C at its terminal) never reach it and its whole group (whatever it started) is
signalled at once. Errors are the ``OSError`` of the start, which each caller words for its
own users.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from hub import data_dir

# How often an adopted process (not our child: no exit notification) is checked.
ADOPTED_POLL_S = 0.5
# How long a group that got SIGKILL is waited for before giving up on it.
KILL_WAIT_S = 5.0


def signal_group(pid: int, sig: int) -> bool:
    """Send ``sig`` to the process group ``pid``; False if it is gone."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    return True


# prctl(2)'s option: a signal this process gets when its parent thread ends.
PR_SET_PDEATHSIG = 1


class ParentGone(Exception):
    """The process that started this one has already ended."""


def die_with_parent(parent: int) -> bool:
    """Have the kernel SIGKILL this process when ``parent`` (the process that started it)
    ends, even by SIGKILL; ``ParentGone`` if it already has. True where the kernel can (Linux),
    False elsewhere (nothing done).

    For work a hub hands to a child of its own (a snapshot's replay) that is useless without
    the hub, never for users' servers, which outlive it on purpose. ``prctl`` has no wrapper in
    the standard library, and one ``ctypes`` call needs no package. The parent is checked
    after the call: had it ended before, no signal would ever come."""
    libc_name = ctypes.util.find_library("c")
    prctl = getattr(ctypes.CDLL(libc_name, use_errno=True), "prctl", None) if libc_name else None
    if prctl is None:
        return False
    if prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        raise ParentGone(f"the process that started this one ({parent}) has ended")
    return True


def exists(pid: int) -> bool:
    """Whether a process ``pid`` exists (ours or another account's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class ChildProcess:
    """A process this hub process started: its exit is known at once."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process

    @property
    def pid(self) -> int:
        """The process id, which is also its group's."""
        return self._process.pid

    def exit_code(self) -> int | None:
        """None while it runs; its code (or -signal) once it exited."""
        return self._process.returncode

    async def wait(self) -> int:
        """Its exit code, once it exits."""
        return await self._process.wait()

    async def stop(self, term_timeout: float) -> bool:
        """SIGTERM its group, SIGKILL after ``term_timeout``; True if SIGKILL was needed."""
        if self._process.returncode is not None:
            signal_group(self.pid, signal.SIGKILL)  # children it may have left behind
            return False
        signal_group(self.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(self._process.wait(), term_timeout)
        except TimeoutError:
            signal_group(self.pid, signal.SIGKILL)
            await self._process.wait()
            return True
        signal_group(self.pid, signal.SIGKILL)
        return False


class AdoptedProcess:
    """A process started by an earlier hub process: only its pid is known, so it is polled."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._code: int | None = None

    @property
    def pid(self) -> int:
        """The process id, which is also its group's."""
        return self._pid

    def exit_code(self) -> int | None:
        """None while it exists; -1 once it is gone (its real code went to its parent)."""
        if self._code is None and not exists(self._pid):
            self._code = -1
        return self._code

    async def wait(self) -> int:
        """Poll until it is gone."""
        # Not our child: no exit notification exists to wait on, so poll.
        while (code := self.exit_code()) is None:  # noqa: ASYNC110
            await asyncio.sleep(ADOPTED_POLL_S)
        return code

    async def stop(self, term_timeout: float) -> bool:
        """SIGTERM its group, SIGKILL after ``term_timeout``; True if SIGKILL was needed."""
        if not signal_group(self._pid, signal.SIGTERM):
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + term_timeout
        while self.exit_code() is None:
            if loop.time() > deadline:
                signal_group(self._pid, signal.SIGKILL)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wait(), KILL_WAIT_S)
                return True
            await asyncio.sleep(0.05)
        return False


async def start(
    command: Sequence[str], *, env: Mapping[str, str], cwd: Path, log_path: Path
) -> ChildProcess:
    """Start ``command`` in a new session (its own process group) in ``cwd``, with exactly
    ``env``, its output (both streams) appended to ``log_path`` (in a directory only the hub
    may read, made if missing). Raises the ``OSError`` of a start that failed."""
    data_dir.private_subdir(log_path.parent)
    with open(log_path, "ab") as log:  # noqa: ASYNC230 - opening is instant
        process = await asyncio.create_subprocess_exec(
            *command,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ChildProcess(process)
