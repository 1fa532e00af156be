"""``chronohub serve`` as a real process on the test run's database, for what only the whole
command does: managed services started from the configuration file, routed by the proxy;
several processes sharing one database and data directory (issue 20)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import hub_process_env

SERVING = re.compile(r"chronohub serving at (http://127\.0\.0\.1:\d+/)hub/")


@dataclass
class Served:
    """A running ``chronohub serve``: its public address (``http://127.0.0.1:<port>/``), its
    process and its log."""

    url: str
    process: asyncio.subprocess.Process
    log: Path

    def kill(self) -> None:
        """kill -9: no clean-up of any kind (the process must not be stopped by the test's end
        either: it is gone)."""
        self.process.send_signal(signal.SIGKILL)


@contextlib.asynccontextmanager
async def serving(
    db_url: str, workdir: Path, config: Path, data_dir: Path, *, name: str = "hub"
) -> AsyncIterator[Served]:
    """``chronohub serve`` with ``config`` on free loopback ports, its state in ``data_dir``
    (which other processes may share) and its log ``workdir / f"{name}.log"``. Stopped with
    SIGTERM at the end, and then it must have exited cleanly, unless the test killed it."""
    env = hub_process_env(db_url, config, data_dir)
    log_path = workdir / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hub.cli", "serve",
            "--ip", "127.0.0.1", "--port", "0", "--hub-port", "0",
            env=env, cwd=workdir, stdout=asyncio.subprocess.PIPE, stderr=log,
        )  # fmt: skip
    killed = False
    try:
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        match = SERVING.match(first)
        assert match, first + log_path.read_text()
        served = Served(match[1], proc, log_path)
        yield served
    finally:
        killed = proc.returncode == -signal.SIGKILL
        if proc.returncode is None:
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        killed = killed or proc.returncode == -signal.SIGKILL
    assert killed or proc.returncode == 0, log_path.read_text()


@contextlib.asynccontextmanager
async def chronohub_serve(db_url: str, tmp_path: Path, config_text: str) -> AsyncIterator[str]:
    """``chronohub serve`` with ``config_text`` (``chronohub.toml``) on free loopback ports;
    yields the public address (``http://127.0.0.1:<port>/``). Stopped with SIGTERM at the end,
    and then it must have exited cleanly; its log is ``tmp_path / "hub.log"``."""
    config = tmp_path / "chronohub.toml"
    config.write_text(config_text)
    async with serving(db_url, tmp_path, config, tmp_path / "state") as served:
        yield served.url
