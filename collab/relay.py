"""Wake-ups between hub processes serving the same room: NOTIFY carries only a room name.

The update table is the carrier: a woken room reads the updates after the last sequence it
holds. A process sends one coalesced NOTIFY per room after its appends commit (on its own
connection, never inside the append), ignores its own notifications, and on every (re)connect
of its LISTEN connection wakes all its rooms, since it may have missed some. Rooms also poll,
so a lost notification only delays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

CHANNEL = "chronohub_collab"
MAX_PAYLOAD_BYTES = 7900  # NOTIFY payloads are limited to 8000 bytes


class Relay:
    """Owns a NOTIFY sender and a reconnecting LISTEN connection; ``wake(room)`` on a notice.

    Use as ``async with Relay(...)`` or ``start()``/``stop()``.
    """

    def __init__(
        self,
        dsn: str | None,
        wake: Callable[[str | None], None],
        *,
        connect_kwargs: dict[str, Any] | None = None,
        coalesce_s: float = 0.002,
        reconnect_s: float = 1.0,
    ) -> None:
        self._dsn = dsn
        self._wake = wake
        self._connect_kwargs = connect_kwargs or {}
        self._coalesce_s = coalesce_s
        self._reconnect_s = reconnect_s
        self._dirty: set[str] = set()
        self._pending = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._own_pids: set[int] = set()
        self.listening = asyncio.Event()

    def announce(self, room: str) -> None:
        """Updates of ``room`` were committed: tell other processes soon."""
        self._dirty.add(room)
        self._pending.set()

    async def start(self) -> None:
        """Start the sender and the listener."""
        self._tasks = [
            asyncio.create_task(self._send_loop(), name="chronohub-collab-notify"),
            asyncio.create_task(self._listen_loop(), name="chronohub-collab-listen"),
        ]

    async def stop(self) -> None:
        """Cancel both tasks and wait for them."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def __aenter__(self) -> Relay:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _connect(self) -> asyncpg.Connection[Any]:
        conn: asyncpg.Connection[Any] = await asyncpg.connect(self._dsn, **self._connect_kwargs)
        return conn

    async def _send_loop(self) -> None:
        conn: asyncpg.Connection[Any] | None = None
        try:
            while True:
                await self._pending.wait()
                await asyncio.sleep(self._coalesce_s)
                self._pending.clear()
                rooms, self._dirty = self._dirty, set()
                try:
                    if conn is None or conn.is_closed():
                        conn = await self._connect()
                        self._own_pids.add(conn.get_server_pid())
                    for room in rooms:
                        if len(room.encode()) <= MAX_PAYLOAD_BYTES:
                            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, room)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log.warning("could not send collab NOTIFY (%s); other processes will poll", exc)
                    conn = None
                    await asyncio.sleep(self._reconnect_s)
        finally:
            if conn is not None and not conn.is_closed():
                await conn.close()

    async def _listen_loop(self) -> None:
        while True:
            conn: asyncpg.Connection[Any] | None = None
            lost = asyncio.Event()
            try:
                conn = await self._connect()
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await conn.add_listener(CHANNEL, self._on_notify)
                self.listening.set()
                self._wake(None)  # anything committed while we were not listening
                await lost.wait()
                log.warning("collab LISTEN connection lost; reconnecting")
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("could not LISTEN for collab (%s); retrying", exc)
            finally:
                self.listening.clear()
                if conn is not None and not conn.is_closed():
                    await conn.close()
            await asyncio.sleep(self._reconnect_s)

    def _on_notify(self, _conn: object, pid: int, _channel: str, payload: object) -> None:
        if pid in self._own_pids:
            return
        self._wake(str(payload))
