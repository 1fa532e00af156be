"""Per-connection limits: message size, flood rate, send buffer, the room grace period, and
how long a state relayed from another process lives without renewal."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """What one connection may send and have buffered; set from the hub's settings."""

    max_message_bytes: int = 1024 * 1024
    rate_per_s: float = 200.0
    rate_burst: int = 1000
    send_buffer_bytes: int = 16 * 1024 * 1024
    room_grace_s: float = 60.0
    compact_after_updates: int = 1000
    poll_s: float = 2.0
    # States learnt from another process and not renewed within this are dropped (the
    # y-protocols outdatedTimeout; clients renew every 15 s). Tests shorten it.
    awareness_timeout_s: float = 30.0


class TokenBucket:
    """A flood limit: ``burst`` messages at once, refilled at ``rate_per_s``; the clock is
    passed in."""

    __slots__ = ("_last", "_tokens", "burst", "rate_per_s")

    def __init__(self, rate_per_s: float, burst: int, now: float) -> None:
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self._tokens = float(burst)
        self._last = now

    def take(self, now: float) -> bool:
        """Spend one message's token; false when the connection is over its rate."""
        tokens = min(self.burst, self._tokens + (now - self._last) * self.rate_per_s)
        self._last = now
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True
