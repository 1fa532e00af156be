"""Between hub processes serving the same room: document wake-ups and awareness, by NOTIFY.

Document updates: NOTIFY carries only a room name, and the update table is the carrier: a
woken room reads the updates after the last sequence it holds. A process sends one coalesced
NOTIFY per room after its appends commit (on its own connection, never inside the append),
ignores its own notifications, and on every (re)connect of its LISTEN connection wakes all
its rooms, since it may have missed some. Rooms also poll, so a lost notification only delays.

Awareness (cursors, who is here) is never stored: the NOTIFY payload itself carries it, as a
JSON object on the same channel (collab/awareness.py has the format and its limit). A process
relays what its own connections send, never what it learnt from another process, so nothing
bounces between processes. A process asks the others for their connections' states when it
opens a room and when its LISTEN connection (re)connects; a lost notification is made good
by the client's next renewal (every 15 s).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from collab import awareness
from events import notify

log = logging.getLogger(__name__)

CHANNEL = "chronohub_collab"
STOP_DRAIN_S = 1.0


class Relay:
    """Rooms between processes. ``announce(room)`` after a commit; ``wake(room)`` when
    another process announced one, ``wake(None)`` after a (re)connect. ``relay_awareness``
    and ``query_awareness`` send awareness; ``on_awareness(message)`` receives it, and
    ``None`` after a (re)connect. Use as ``async with Relay(...)`` or ``start()``/``stop()``.
    """

    def __init__(
        self,
        dsn: str | None,
        wake: Callable[[str | None], None],
        *,
        on_awareness: Callable[[awareness.Message | None], None] | None = None,
        connect_kwargs: dict[str, Any] | None = None,
        coalesce_s: float = 0.002,
        reconnect_s: float = 1.0,
    ) -> None:
        self._wake = wake
        self._on_awareness = on_awareness
        self._channel = notify.Channel(
            dsn,
            CHANNEL,
            self._on_message,
            ignore_own=True,
            coalesce_s=coalesce_s,
            reconnect_s=reconnect_s,
            connect_kwargs=connect_kwargs,
        )
        self.listening = self._channel.listening

    def announce(self, room: str) -> None:
        """Updates of ``room`` were committed: tell other processes soon."""
        self._channel.send(room)

    def relay_awareness(self, payload: str) -> None:
        """Send an awareness payload (``awareness.encode_update``) to other processes soon."""
        self._channel.send(payload)

    def query_awareness(self, room: str) -> None:
        """Ask other processes for the awareness states of their connections to ``room``."""
        self._channel.send(awareness.encode_query(room))

    def _on_message(self, payload: str | None) -> None:
        if payload is None:
            self._wake(None)
            if self._on_awareness is not None:
                self._on_awareness(None)
        elif awareness.is_awareness(payload):
            if self._on_awareness is None:
                return
            try:
                message = awareness.decode(payload)
            except awareness.BadPayload as exc:
                log.warning("ignoring a notification on %s: %s", CHANNEL, exc)
                return
            self._on_awareness(message)
        else:
            self._wake(payload)

    async def start(self) -> None:
        """Start the sender and the listener."""
        await self._channel.start()

    async def stop(self) -> None:
        """Send what is queued (departures, within ``STOP_DRAIN_S``), then stop them."""
        await self._channel.drain(STOP_DRAIN_S)
        await self._channel.stop()

    async def __aenter__(self) -> Relay:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
