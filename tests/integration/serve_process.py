"""``chronohub serve`` as a real process on the test run's database, for what only the whole
command does: managed services started from the configuration file, routed by the proxy."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from tests.helpers import hub_process_env

SERVING = re.compile(r"chronohub serving at (http://127\.0\.0\.1:\d+/)hub/")


@contextlib.asynccontextmanager
async def chronohub_serve(db_url: str, tmp_path: Path, config_text: str) -> AsyncIterator[str]:
    """``chronohub serve`` with ``config_text`` (``chronohub.toml``) on free loopback ports;
    yields the public address (``http://127.0.0.1:<port>/``). Stopped with SIGTERM at the end,
    and then it must have exited cleanly; its log is ``tmp_path / "hub.log"``."""
    config = tmp_path / "chronohub.toml"
    config.write_text(config_text)
    env = hub_process_env(db_url, config, tmp_path / "state")
    log_path = tmp_path / "hub.log"
    with open(log_path, "wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hub.cli", "serve",
            "--ip", "127.0.0.1", "--port", "0", "--hub-port", "0",
            env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=log,
        )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        match = SERVING.match(first)
        assert match, first + log_path.read_text()
        yield match[1]
    finally:
        if proc.returncode is None:
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, log_path.read_text()
