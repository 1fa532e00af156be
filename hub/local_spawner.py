"""The local-process spawner: each server is a child process in its own process group.

The process gets only the environment it is given (JupyterHub's contract, built by
``hub.servers``) plus a few variables kept from the hub's (``ENV_KEEP``, as JupyterHub's
``Spawner.env_keep``), never the rest: the hub's environment may hold database credentials.
Its output goes to a log file; its working directory and ``HOME`` are the user's own directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from hub import spawner

ENV_KEEP = (
    "PATH",
    "PYTHONPATH",
    "CONDA_ROOT",
    "CONDA_DEFAULT_ENV",
    "VIRTUAL_ENV",
    "LANG",
    "LC_ALL",
    "JUPYTERHUB_SINGLEUSER_APP",
)
# How often an adopted process (not our child: no exit notification) is checked.
ADOPTED_POLL_S = 0.5


def _signal_group(pid: int, sig: int) -> bool:
    """Send ``sig`` to the process group ``pid``; False if it is gone."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    return True


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class ChildProcess:
    """A server this hub process started: its exit is known at once."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process

    @property
    def pid(self) -> int:
        """The process id, which is also its group's."""
        return self._process.pid

    def exit_code(self) -> int | None:
        """None while it runs."""
        return self._process.returncode

    async def wait(self) -> int:
        """Its exit code, once it exits."""
        return await self._process.wait()

    async def stop(self, term_timeout: float) -> bool:
        """SIGTERM, then SIGKILL after ``term_timeout``; True if SIGKILL was needed."""
        if self._process.returncode is not None:
            _signal_group(self.pid, signal.SIGKILL)  # children it may have left behind
            return False
        _signal_group(self.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(self._process.wait(), term_timeout)
        except TimeoutError:
            _signal_group(self.pid, signal.SIGKILL)
            await self._process.wait()
            return True
        _signal_group(self.pid, signal.SIGKILL)
        return False


class AdoptedProcess:
    """A server started by an earlier hub process: only its pid is known, so it is polled."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._code: int | None = None

    @property
    def pid(self) -> int:
        """The process id, which is also its group's."""
        return self._pid

    def exit_code(self) -> int | None:
        """None while it exists; -1 once it is gone (its real code went to its parent)."""
        if self._code is None and not _exists(self._pid):
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
        if not _signal_group(self._pid, signal.SIGTERM):
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + term_timeout
        while self.exit_code() is None:
            if loop.time() > deadline:
                _signal_group(self._pid, signal.SIGKILL)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wait(), 5)
                return True
            await asyncio.sleep(0.05)
        return False


class LocalSpawner:
    """Starts servers as local child processes of the hub."""

    def __init__(self, env_keep: Sequence[str] = ENV_KEEP) -> None:
        self.env_keep = tuple(env_keep)

    async def start(self, spec: spawner.SpawnSpec) -> spawner.ServerProcess:
        """Start ``spec.command`` in ``spec.workdir``, in a new session (its own process group)."""
        env = {k: os.environ[k] for k in self.env_keep if k in os.environ}
        env.update(spec.env)
        env["HOME"] = str(spec.workdir)
        try:
            spec.workdir.mkdir(parents=True, exist_ok=True)
            spec.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(spec.log_path, "ab") as log:  # noqa: ASYNC230 - opening is instant
                process = await asyncio.create_subprocess_exec(
                    *spec.command,
                    env=env,
                    cwd=spec.workdir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except FileNotFoundError:
            raise spawner.SystemFailure(
                f"the spawner command {spec.command[0]!r} does not exist"
            ) from None
        except PermissionError:
            raise spawner.SystemFailure(
                f"the spawner command {spec.command[0]!r} is not executable"
            ) from None
        except OSError as exc:
            raise spawner.SystemFailure(f"could not start {spec.command[0]!r}: {exc}") from exc
        return ChildProcess(process)

    def adopt(self, pid: int) -> spawner.ServerProcess | None:
        """The process group ``pid`` if it still exists."""
        if pid <= 1 or not _exists(pid):
            return None
        return AdoptedProcess(pid)


def log_path(root: Path, user: str, server_name: str) -> Path:
    """Where a server's output goes."""
    return root / "logs" / (f"{user}-{server_name}.log" if server_name else f"{user}.log")
