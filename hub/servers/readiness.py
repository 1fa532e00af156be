"""Whether a server just started (or re-adopted) answers yet: its API polled until it does.

Readiness is polled often at first, then less: the hub's overhead per spawn is mostly how late
the first successful check comes after the server listens.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from hub.servers import server_log, spawner

POLL_FIRST_S = 0.005
POLL_MAX_S = 0.02
POLL_REQUEST_TIMEOUT_S = 2.0


async def wait_ready(
    session: aiohttp.ClientSession,
    url: str,
    process: spawner.ServerProcess,
    deadline: float,
    log_path: Path,
    start_timeout: float,
) -> None:
    """Poll ``{url}api`` until it answers (any status below 500); ``SystemFailure`` when the
    process exits first (with the error its log shows) or ``deadline`` (loop time) passes."""
    loop = asyncio.get_running_loop()
    interval = POLL_FIRST_S
    while True:
        # A JupyterHub spawner's server is asked through its poll (it may not be a process here).
        located = isinstance(process, spawner.LocatedProcess)
        code = (
            await process.poll()
            if isinstance(process, spawner.LocatedProcess)
            else process.exit_code()
        )
        if code is not None:
            error = None if located else server_log.error_of(log_path)
            raise spawner.SystemFailure(
                f"the server exited with code {code} before it answered"
                + (f": {error}" if error else "")
                + ("" if located else f" (its log: {log_path})")
            )
        try:
            async with session.get(url + "api", allow_redirects=False) as response:
                if response.status < 500:
                    return
        except (aiohttp.ClientError, TimeoutError):
            pass
        if loop.time() > deadline:
            raise spawner.SystemFailure(
                f"the server did not answer at {url}api within {start_timeout:g} s"
            )
        await asyncio.sleep(interval)
        interval = min(interval * 1.5, POLL_MAX_S)
