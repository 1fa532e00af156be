"""The y-websocket endpoint ``/collab/<room>`` on aiohttp.

Each connection is admitted by the gatekeeper the hub hands over (``collab.access``), joins
its room, and feeds its frames to the room one by one. A refusal or a bad frame closes only
that connection, with a 44xx code (y-websocket does not retry those) and a reason; refusals
are preceded by the protocol's auth message (permission denied) so the client logs why.

Outgoing frames bypass aiohttp's per-message send path: a room builds each WebSocket frame
once and writes it, coalesced per connection, straight to the transport (``TransportSink``).
That is safe because compression is off (a frame is the same bytes for every receiver) and
aiohttp itself only ever writes whole frames (pongs, the close frame) to the same transport.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import WSMsgType, web

from collab import access, errors, protocol
from collab.room import Connection
from collab.rooms import Rooms
from events import errors as event_errors

log = logging.getLogger(__name__)

PATH = "/collab/{room:.+}"
# The same endpoint under /hub/: the hub's login cookie is scoped to /hub/, so a browser page
# joining with the cookie (no token) connects here.
COOKIE_PATH = "/hub/collab/{room:.+}"
# aiohttp refuses frames over this itself (close 1009); ours, smaller, gives a clearer reason.
AIOHTTP_SLACK_BYTES = 64 * 1024
HEARTBEAT_S = 30.0


class TransportSink:
    """A connection's frames written straight to its transport; closing goes through aiohttp."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self._ws = ws
        transport = request.transport
        if transport is None:
            raise errors.CollabError("the connection has no transport")
        self._transport = transport
        self.closing: asyncio.Task[bool] | None = None
        self.close_reason = ""

    def write(self, data: bytes) -> None:
        """Queue frames on the transport (a no-op once it is closing)."""
        if not self._transport.is_closing():
            self._transport.write(data)

    def buffered(self) -> int:
        """Bytes the transport has not sent yet."""
        return self._transport.get_write_buffer_size()

    def close(self, code: int, reason: str) -> None:
        """Start closing the WebSocket; the handler awaits it."""
        if self.closing is None:
            self.close_reason = reason
            self.closing = asyncio.ensure_future(self._ws.close(code=code, message=reason.encode()))


class Endpoint:
    """The ``/collab/<room>`` handler, bound to the rooms and the gatekeeper."""

    def __init__(self, rooms: Rooms, gatekeeper: access.Gatekeeper) -> None:
        self.rooms = rooms
        self.gatekeeper = gatekeeper

    def routes(self) -> list[web.RouteDef]:
        """The routes of the endpoint."""
        return [web.get(PATH, self.handle), web.get(COOKIE_PATH, self.handle)]

    def install(self, app: web.Application) -> None:
        """Add the routes, and close every connection when the app shuts down (else aiohttp
        waits for open WebSockets before it stops)."""
        app.add_routes(self.routes())
        app.on_shutdown.append(self._on_shutdown)

    async def _on_shutdown(self, _app: web.Application) -> None:
        self.rooms.disconnect_all()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one y-websocket connection until it closes."""
        limits = self.rooms.limits
        ws = web.WebSocketResponse(
            compress=False,
            max_msg_size=limits.max_message_bytes + AIOHTTP_SLACK_BYTES,
            autoping=True,
            # A peer gone without a close (network loss) is noticed within a minute and its
            # awareness states removed; y-websocket clients answer pings without help.
            heartbeat=HEARTBEAT_S,
        )
        await ws.prepare(request)
        name = request.match_info["room"]
        handshake = access.Handshake(
            headers=request.headers,
            query=request.query,
            cookies=request.cookies,
            remote=request.remote,
        )
        try:
            info = await self.rooms.describe(name)
            participant = await self.gatekeeper.admit(handshake, info)
            if not info.exists and not participant.can_write:
                raise errors.ConnectionRefused(
                    errors.NOT_FOUND,
                    f"room {name} does not exist (read-only access cannot create it)",
                )
            room = await self.rooms.open(name, creator=participant)
        except errors.InvalidRoomName as exc:
            await ws.close(code=errors.BAD_MESSAGE, message=errors.short_reason(str(exc)).encode())
            return ws
        except event_errors.DatabaseUnavailable as exc:
            log.warning("room %s: cannot admit a connection: %s", name, exc)
            await ws.close(code=errors.UNAVAILABLE, message=b"the hub's database does not answer")
            return ws
        except errors.ConnectionRefused as exc:
            await ws.send_bytes(protocol.permission_denied(exc.reason))
            await ws.close(code=exc.code, message=exc.reason.encode())
            return ws
        sink = TransportSink(ws, request)
        conn = Connection(participant, sink, limits)
        room.join(conn)
        reason = "closed by the client"
        try:
            self.rooms.joined(room, conn)
            async for message in ws:
                if message.type is WSMsgType.BINARY:
                    room.receive(conn, message.data)
                elif message.type is WSMsgType.TEXT:
                    raise errors.ProtocolError(
                        "text frames are not part of the y-websocket protocol"
                    )
                else:  # ERROR: aiohttp has closed the connection (e.g. a frame over its limit)
                    reason = f"transport error: {ws.exception()}"
                    break
        except errors.ConnectionRefused as exc:
            reason = exc.reason
            log.info("room %s: closing %s's connection: %s", name, participant.label, reason)
            room.drop(conn, exc.code, exc.reason)
        finally:
            room.leave(conn)
            if sink.closing is not None and reason == "closed by the client":
                reason = sink.close_reason
            try:
                if sink.closing is not None:
                    await sink.closing
            finally:
                # Recorded even if aiohttp cancels this handler while the close waits (the
                # socket gone): the leave would otherwise never reach the log.
                self.rooms.left(room, conn, reason)
        return ws
