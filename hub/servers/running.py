"""What this hub process knows of the servers it runs, and the locks that order their changes.

A ``Live`` is one server this process is starting, running or stopping: its process, its
tasks, how the spawn ended and its progress events. ``KeyedLocks`` gives each server a lock
for its transitions (spawn, ready, stop, failure), kept only while someone holds it or waits
for it, so that a hub that has seen many servers come and go does not keep a lock for each.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from uuid import UUID

from hub.servers import spawner

K = TypeVar("K", bound=Hashable)


@dataclass
class Live:
    """What this process knows of one server it runs (or is starting, or stopping)."""

    user_id: UUID
    user: str
    server_name: str
    token_id: str | None = None
    admin: bool = False
    process: spawner.ServerProcess | None = None
    spawn_task: asyncio.Task[None] | None = None
    watcher: asyncio.Task[None] | None = None
    stopping: bool = False
    # Started by another hub process (perhaps dead since), watched here so that its exit is
    # recorded: this process does not stop it at its own shutdown.
    watch_only: bool = False
    outcome: asyncio.Future[str] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    progress: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def key(self) -> tuple[UUID, str]:
        return (self.user_id, self.server_name)

    def report(self, event: dict[str, Any]) -> None:
        """Add a progress event and wake whoever follows the progress."""
        self.progress.append(event)
        self.changed.set()
        self.changed = asyncio.Event()

    def finish(self, outcome: str) -> None:
        if not self.outcome.done():
            self.outcome.set_result(outcome)


def ids(live: Live) -> dict[str, Any]:
    """The fields that name the server in each of its events."""
    return {"user_id": live.user_id, "user": live.user, "server_name": live.server_name}


class KeyedLocks(Generic[K]):
    """One ``asyncio.Lock`` per key, dropped once nobody holds it or waits for it."""

    def __init__(self) -> None:
        # the lock, and how many hold it or wait for it
        self._locks: dict[K, tuple[asyncio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: K) -> AsyncIterator[None]:
        """Hold ``key``'s lock for the block."""
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[key]

    def __len__(self) -> int:
        return len(self._locks)

    def __contains__(self, key: object) -> bool:
        return key in self._locks
