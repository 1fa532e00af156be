"""Wake-ups between hub processes serving the same room: NOTIFY carries only a room name.

The update table is the carrier: a woken room reads the updates after the last sequence it
holds. A process sends one coalesced NOTIFY per room after its appends commit (on its own
connection, never inside the append), ignores its own notifications, and on every (re)connect
of its LISTEN connection wakes all its rooms, since it may have missed some. Rooms also poll,
so a lost notification only delays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from events import notify

CHANNEL = "chronohub_collab"


class Relay:
    """Room wake-ups between processes: ``announce(room)`` after a commit; ``wake(room)`` when
    another process announced one, ``wake(None)`` after a (re)connect. Use as
    ``async with Relay(...)`` or ``start()``/``stop()``.
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
        self._channel = notify.Channel(
            dsn,
            CHANNEL,
            wake,
            ignore_own=True,
            coalesce_s=coalesce_s,
            reconnect_s=reconnect_s,
            connect_kwargs=connect_kwargs,
        )
        self.listening = self._channel.listening

    def announce(self, room: str) -> None:
        """Updates of ``room`` were committed: tell other processes soon."""
        self._channel.send(room)

    async def start(self) -> None:
        """Start the sender and the listener."""
        await self._channel.start()

    async def stop(self) -> None:
        """Stop them."""
        await self._channel.stop()

    async def __aenter__(self) -> Relay:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
