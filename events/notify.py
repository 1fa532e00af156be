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
from collections.abc import Callable
from typing import Any, Self

import asyncpg

from events import errors, sql, tasks

log = logging.getLogger(__name__)

CHANNEL = "chronohub_events"
MAX_PAYLOAD_BYTES = 7900  # PostgreSQL refuses NOTIFY payloads of 8000 bytes or more


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


class Channel:
    """One NOTIFY channel between processes: payloads sent after commit, coalesced, on a
    connection of their own, and a LISTEN connection that reconnects when it is lost.

    ``on_message(payload)`` is called for each notification, and with ``None`` each time the
    listener (re)connects: whatever was sent while it was not listening is unknown, so the
    receiver should look at everything. With ``ignore_own``, notifications this object sent
    itself are not handed on. Use as ``async with Channel(...)`` or ``start()``/``stop()``.
    """

    def __init__(
        self,
        dsn: str | None,
        channel: str,
        on_message: Callable[[str | None], None],
        *,
        ignore_own: bool = False,
        coalesce_s: float = 0.02,
        reconnect_s: float = 1.0,
        ping_s: float = 5.0,
        connect_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self._dsn = dsn
        self._channel = channel
        self._ping_s = ping_s
        self._on_message = on_message
        self._ignore_own = ignore_own
        self._coalesce_s = coalesce_s
        self._reconnect_s = reconnect_s
        self._connect_kwargs = connect_kwargs or {}
        self._outbox: set[str] = set()
        self._pending = asyncio.Event()
        self._drained = asyncio.Event()  # set while nothing sent is waiting to go out
        self._drained.set()
        self._own_pids: set[int] = set()
        self._tasks = tasks.TaskOwner("notifier", logger=log)
        self.listening = asyncio.Event()

    def send(self, payload: str = "") -> None:
        """Notify other processes soon; equal payloads sent meanwhile go out once. A payload
        over PostgreSQL's limit is not sent (receivers poll, so it is only late)."""
        if len(payload.encode()) <= MAX_PAYLOAD_BYTES:
            self._outbox.add(payload)
            self._pending.set()
            self._drained.clear()

    async def drain(self, within_s: float) -> bool:
        """Wait until every payload sent so far has gone out (or failed), at most
        ``within_s`` seconds; true if it did. Before ``stop()``, so that a last word (a
        departure) is not lost."""
        if not self._tasks:
            return self._drained.is_set()
        try:
            await asyncio.wait_for(self._drained.wait(), within_s)
        except TimeoutError:
            return False
        return True

    async def start(self) -> None:
        """Start the sender and the listener tasks."""
        self._tasks.start(self._send_loop(), f"{self._channel}-notify")
        self._tasks.start(self._listen_loop(), f"{self._channel}-listen")

    async def stop(self) -> None:
        """Cancel both tasks and wait for them."""
        await self._tasks.close()

    async def __aenter__(self) -> Self:
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
                payloads, self._outbox = self._outbox, set()
                try:
                    with sql.translated():
                        if conn is None or conn.is_closed():
                            conn = await self._connect()
                            self._own_pids.add(conn.get_server_pid())
                        for payload in payloads:
                            await conn.execute("SELECT pg_notify($1, $2)", self._channel, payload)
                except errors.DatabaseUnavailable as exc:
                    # Other processes still poll: a lost NOTIFY only delays them.
                    log.warning("could not send NOTIFY (%s); other processes will poll", exc)
                    conn = None
                    await asyncio.sleep(self._reconnect_s)
                if not self._outbox:
                    self._drained.set()
                await asyncio.sleep(self._coalesce_s)
        finally:
            if conn is not None and not conn.is_closed():
                await conn.close()

    async def _listen_loop(self) -> None:
        while True:
            conn: asyncpg.Connection[Any] | None = None
            lost = asyncio.Event()
            try:
                with sql.translated():
                    conn = await self._connect()
                    conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                    await conn.add_listener(self._channel, self._on_notify)
                    self.listening.set()
                    self._on_message(None)  # anything sent while we were not listening
                    while not lost.is_set() and await self._answers(conn, lost):
                        pass
                log.warning("LISTEN connection lost; reconnecting")
            except errors.DatabaseUnavailable as exc:
                log.warning("could not LISTEN (%s); retrying in %.1fs", exc, self._reconnect_s)
            finally:
                self.listening.clear()
                if conn is not None and not conn.is_closed():
                    # bounded: a connection that stopped answering would not answer a goodbye
                    # either (asyncpg aborts it when the graceful close fails)
                    with contextlib.suppress(TimeoutError, OSError, asyncpg.PostgresError):
                        await conn.close(timeout=self._ping_s)
            await asyncio.sleep(self._reconnect_s)

    async def _answers(self, conn: asyncpg.Connection[Any], lost: asyncio.Event) -> bool:
        """Wait ``ping_s`` for the connection to end; if it has not, whether it still answers
        within ``ping_s``. A connection cut without a reset (a partition) never ends by
        itself, and notifications sent meanwhile would be lost unnoticed."""
        # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow the cancellation
        # that stop() sends when its inner wait ends at the same moment
        try:
            async with asyncio.timeout(self._ping_s):
                await lost.wait()
            return False
        except TimeoutError:
            pass
        try:
            async with asyncio.timeout(self._ping_s):
                await conn.fetchval("SELECT 1")
        except TimeoutError:
            log.warning("LISTEN connection did not answer within %.1fs", self._ping_s)
            return False
        return True

    def _on_notify(self, _conn: object, pid: int, _channel: str, payload: object) -> None:
        if self._ignore_own and pid in self._own_pids:
            return
        self._on_message(str(payload))


class Notifier:
    """The event log's cross-process wake-up: local subscribers are woken at once, other
    processes by one coalesced, empty NOTIFY on ``CHANNEL``.

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
        self._channel = Channel(
            dsn,
            channel,
            lambda _payload: self.wakeup.fire(),
            coalesce_s=coalesce_s,
            reconnect_s=reconnect_s,
            connect_kwargs=connect_kwargs,
        )
        self.listening = self._channel.listening

    def poke(self) -> None:
        """Something was committed: wake local subscribers now, other processes soon."""
        self.wakeup.fire()
        self._channel.send()

    async def start(self) -> None:
        """Start the sender and the listener tasks."""
        await self._channel.start()

    async def stop(self) -> None:
        """Stop them."""
        await self._channel.stop()

    async def __aenter__(self) -> Notifier:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
