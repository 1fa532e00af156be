"""The progress of a spawn, as JupyterHub's progress API streams it (``/progress``).

In the hub process that runs the spawn, the events are those its ``running.Live`` collected
(``report``); the keys kept for the manager's own use (``kind``, ``reason``: whose fault a
failure was) are left out.

Any other hub process on the same database follows the spawn from the log instead
(``from_log``): the server's stream holds each step (spawn requested, started, ready,
failed, stopped), and JupyterHub's progress events are derived from them, woken by the
log's wake-ups (a NOTIFY from the process that appended). What the log does not hold is
a JupyterHub spawner's own intermediate messages: those only the spawning process shows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from events import models, store
from events.catalog import servers as server_events
from hub.servers import rules, running

# Waiting for a wake-up is bounded: a lost NOTIFY only delays the next read this long.
LOG_POLL_S = 1.0

PRIVATE = ("kind", "reason")


def public(event: dict[str, Any]) -> dict[str, Any]:
    """A progress event without the manager's own keys."""
    return {k: v for k, v in event.items() if k not in PRIVATE}


def latest(live: running.Live | None) -> dict[str, Any] | None:
    """The last progress event of a spawn, or None."""
    if live is None or not live.progress:
        return None
    return public(live.progress[-1])


def follow(live: running.Live | None) -> AsyncIterator[dict[str, Any]] | None:
    """The progress events of a spawn in progress (past ones first), or None."""
    if live is None or live.stopping or live.outcome.done():
        return None
    return _follow(live)


async def _follow(live: running.Live) -> AsyncIterator[dict[str, Any]]:
    sent = 0
    while True:
        changed = live.changed
        while sent < len(live.progress):
            event = live.progress[sent]
            sent += 1
            yield public(event)
            if event.get("progress") == 100:
                return
        await changed.wait()


def ready_event(path: str) -> dict[str, Any]:
    """The last progress event of a spawn that ended with the server ready at ``path``."""
    return {
        "progress": 100,
        "ready": True,
        "message": f"Server ready at {path}",
        "html_message": f'Server ready at <a href="{path}">{path}</a>',
        "url": path,
    }


def failed_event(reason: str, kind: str) -> dict[str, Any]:
    """The last progress event of a failed spawn (the manager's keys included)."""
    message = reason if kind == "policy" else f"Spawn failed: {reason}"
    return {"progress": 100, "failed": True, "message": message, "kind": kind, "reason": reason}


STOPPED = {"progress": 100, "failed": True, "message": "Spawn cancelled: stopped"}


def from_event(event: models.Event, path: str) -> list[dict[str, Any]]:
    """The progress events one server event stands for (none for most)."""
    match event:
        case server_events.ServerSpawnRequested():
            return [{"progress": 0, "message": "Server requested"}]
        case server_events.ServerStarted(pid=pid, url=url):
            what = f"process {pid}" if pid else f"at {url}"
            # Started implies the spawner was called: the spawning process said so first.
            return [
                {"progress": 10, "message": "Spawning server..."},
                {"progress": 50, "message": f"Server {what} started; waiting for it"},
            ]
        case server_events.ServerReady():
            return [ready_event(path)]
        case server_events.ServerFailed(reason=reason, kind=kind):
            return [public(failed_event(reason, kind))]
        case server_events.ServerStopped() | server_events.ServerRemoved():
            return [dict(STOPPED)]
    return []


async def from_log(
    event_store: store.EventStore, user_id: Any, user: str, server_name: str
) -> AsyncIterator[dict[str, Any]]:
    """The progress of the spawn the log says is under way (past steps first), to its end.

    For a spawn another hub process runs. Reads the server's stream from its last spawn
    request on, then waits for the log's wake-ups and reads what came after.
    """
    stream = server_events.stream_id(user_id, server_name)
    path = rules.prefix(user, server_name)
    history = await event_store.read_stream(stream)
    start = max(
        (
            e.stream_version
            for e in history
            if isinstance(e.data, server_events.ServerSpawnRequested)
        ),
        default=len(history) + 1,
    )
    pending = [e for e in history if e.stream_version >= start]
    version = start
    while True:
        for recorded in pending:
            version = recorded.stream_version + 1
            for event in from_event(recorded.data, path):
                yield event
                if event.get("progress") == 100:
                    return
        token = event_store.wakeup.token()
        pending = await event_store.read_stream(stream, from_version=version)
        if not pending:
            await event_store.wakeup.wait(token, LOG_POLL_S)
