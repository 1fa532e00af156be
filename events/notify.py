"""Wake-ups for subscribers: in-process at once, across processes by one coalesced NOTIFY.

A notification never carries an event: subscribers always catch up by position, so a lost
wake-up only delays them until their next poll. NOTIFY is sent after commit on its own
connection, never inside an append transaction, where it would take a global lock at
commit and halve append throughput.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

CHANNEL = "chronohub_events"


class Wakeup:
    """A broadcast edge: ``fire()`` wakes every waiter holding the current ``token()``.

    Take the token *before* reading, then wait on it: a fire between the read and the
    wait is not missed.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def token(self) -> asyncio.Event:
        """The edge the next ``fire()`` will set."""
        return self._event

    def fire(self) -> None:
        """Wake everyone waiting on the current token."""
        event, self._event = self._event, asyncio.Event()
        event.set()

    @staticmethod
    async def wait(token: asyncio.Event, within_s: float) -> bool:
        """Wait until ``token`` fires or ``within_s`` seconds pass; true if it fired."""
        try:
            await asyncio.wait_for(token.wait(), within_s)
        except TimeoutError:
            return False
        return True


class Notifier:
    """Owns the cross-process wake-up: a debounced NOTIFY sender and a reconnecting listener.

    Use as ``async with Notifier(dsn) as n`` or ``start()``/``stop()``; ``poke()`` after a commit.
    """

    def __init__(
        self,
        dsn: str | None,
        *,
        channel: str = CHANNEL,
        coalesce_s: float = 0.02,
        reconnect_s: float = 1.0,
        connect_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.wakeup = Wakeup()
        self._dsn = dsn
        self._channel = channel
        self._coalesce_s = coalesce_s
        self._reconnect_s = reconnect_s
        self._connect_kwargs = connect_kwargs or {}
        self._pending = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.listening = asyncio.Event()

    def poke(self) -> None:
        """Something was committed: wake local subscribers now, other processes soon."""
        self.wakeup.fire()
        self._pending.set()

    async def start(self) -> None:
        """Start the sender and the listener tasks."""
        self._tasks = [
            asyncio.create_task(self._send_loop(), name="chronohub-notify-sender"),
            asyncio.create_task(self._listen_loop(), name="chronohub-notify-listener"),
        ]

    async def stop(self) -> None:
        """Cancel both tasks and wait for them."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def __aenter__(self) -> Notifier:
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
                self._pending.clear()
                try:
                    if conn is None or conn.is_closed():
                        conn = await self._connect()
                    await conn.execute("SELECT pg_notify($1, '')", self._channel)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    # Other processes still poll: a lost NOTIFY only delays them.
                    log.warning("could not send NOTIFY (%s); other processes will poll", exc)
                    conn = None
                    await asyncio.sleep(self._reconnect_s)
                await asyncio.sleep(self._coalesce_s)
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
                await conn.add_listener(self._channel, self._on_notify)
                self.listening.set()
                # Anything committed while we were not listening: wake subscribers once.
                self.wakeup.fire()
                await lost.wait()
                log.warning("LISTEN connection lost; reconnecting")
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("could not LISTEN (%s); retrying in %.1fs", exc, self._reconnect_s)
            finally:
                self.listening.clear()
                if conn is not None and not conn.is_closed():
                    await conn.close()
            await asyncio.sleep(self._reconnect_s)

    def _on_notify(self, *_args: object) -> None:
        self.wakeup.fire()
