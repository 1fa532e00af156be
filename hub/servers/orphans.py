"""A server's process that its hub started but never recorded: the hub was killed between
starting it and appending ``server.started`` (with its pid). At restart the log says the spawn
was only requested, so nothing would stop that process: it is found here by the one thing
that is certainly its own, the spawn's API token in its environment (compared by digest with
the stored hash, the way the hub checks tokens), so that ``ServerManager.readopt`` stops it.

Only for processes of this machine (``/proc``), started by chronohub's local spawner in a
session of their own (the group leader holds the environment the spawner gave)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from events import sql, store
from hub import processes
from hub.auth import tokens

queries = sql.Queries(__package__ or "hub.servers", "servers.sql")

TOKEN_VARIABLE = b"JUPYTERHUB_API_TOKEN="


async def unrecorded(
    event_store: store.EventStore, token_id: str | None
) -> processes.AdoptedProcess | None:
    """The running process group that holds the token ``token_id`` in its environment."""
    if not token_id:
        return None
    async with event_store.connection() as conn:
        digest = await conn.fetchval(queries["spawn_token_hash"], token_id)
    if digest is None:
        return None
    pid = await asyncio.to_thread(_holding, bytes(digest))
    return None if pid is None else processes.AdoptedProcess(pid)


def _holding(digest: bytes) -> int | None:
    """The group leader whose environment holds the token of ``digest`` (from /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if os.getpgid(pid) != pid:
                continue
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        for item in environ.split(b"\0"):
            if item.startswith(TOKEN_VARIABLE):
                secret = item[len(TOKEN_VARIABLE) :].decode(errors="replace")
                if tokens.digest(secret) == digest:
                    return pid
    return None
