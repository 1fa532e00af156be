"""collab's typed errors. Each one that ends a connection carries the WebSocket close code and
a reason short enough for a close frame (123 bytes)."""

from __future__ import annotations

# Close codes. y-websocket (3.x) does not reconnect after 4400-4499, and does after anything
# else, so refusals and protocol errors use that range; a server going away uses 1001.
BAD_MESSAGE = 4400
UNAUTHORIZED = 4401
FORBIDDEN = 4403
NOT_FOUND = 4404
TOO_LARGE = 4413
FLOOD = 4429
SLOW_CONSUMER = 4408
GOING_AWAY = 1001
UNAVAILABLE = 1011  # the database did not answer: retried by y-websocket, as it should be

MAX_REASON_BYTES = 123


def short_reason(text: str) -> str:
    """``text`` cut to fit a close frame's reason (123 UTF-8 bytes)."""
    data = text.encode()
    if len(data) <= MAX_REASON_BYTES:
        return text
    return data[: MAX_REASON_BYTES - 3].decode(errors="ignore") + "..."


class CollabError(Exception):
    """Base of collab's errors."""


class ConnectionRefused(CollabError):
    """This connection must be closed with ``code`` and ``reason``; the room is unaffected."""

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = short_reason(reason)
        super().__init__(f"{code}: {reason}")


class ProtocolError(ConnectionRefused):
    """A frame that is not a well-formed y-websocket message, or an update that does not apply."""

    def __init__(self, reason: str, code: int = BAD_MESSAGE) -> None:
        super().__init__(code, reason)


class InvalidRoomName(CollabError):
    """A room name outside the allowed pattern."""
