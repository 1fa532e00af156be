"""The progress of a spawn, as JupyterHub's progress API streams it (``/progress``).

The events are those a ``running.Live`` collected (``report``); the keys kept for the
manager's own use (``kind``, ``reason``: whose fault a failure was) are left out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from hub.servers import running

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
