"""A Python client of chronohub rooms (the y-websocket protocol on the ``websockets`` package).

    async with client.connect("ws://127.0.0.1:8000", "my-room", token=t) as joined:
        await joined.synced.wait()
        text = joined.doc.get("text", type=pycrdt.Text)
        text += "hello"                     # sent to the room
        await joined.flushed()              # ... and written to the socket

It speaks the same protocol as Yjs' ``y-websocket`` provider: SyncStep1 on open, answers the
server's SyncStep1, applies SyncStep2 and updates, sends every local change, and keeps an
awareness. pycrdt's own ``Provider`` does the sync part, but ignores awareness and the auth
message and does not report why the server closed, which tests and services need; the loop
here is small and uses pycrdt's encoders.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pycrdt
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from collab import protocol
from collab.errors import CollabError
from events import tasks

log = logging.getLogger(__name__)


class RoomClient:
    """A joined room: its document, awareness, and what the server said when it refused."""

    def __init__(self, ws: ClientConnection, doc: pycrdt.Doc[Any]) -> None:
        self.ws = ws
        self.doc = doc
        self.awareness = pycrdt.Awareness(doc)
        self.synced = asyncio.Event()
        self.denied: list[str] = []
        self.received = 0
        self._outgoing: asyncio.Queue[bytes] = asyncio.Queue()
        self._remote = False
        self._tasks = tasks.TaskOwner("collab client", logger=log)
        self._subscription = doc.observe(self._on_local_update)
        self._awareness_subscription = self.awareness.observe(self._on_awareness)

    @property
    def close_code(self) -> int | None:
        """The close code the connection ended with (None while open)."""
        return self.ws.close_code

    @property
    def close_reason(self) -> str | None:
        """The close reason the connection ended with (None while open)."""
        return self.ws.close_reason

    async def start(self) -> None:
        """Start reading and writing; send SyncStep1 and our awareness."""
        self._tasks.start(self._read(), "chronohub-collab-client-read")
        self._tasks.start(self._write(), "chronohub-collab-client-write")
        self._outgoing.put_nowait(protocol.sync_step1(self.doc))

    async def close(self) -> None:
        """Leave the room: announce our awareness gone, close the socket, stop the tasks."""
        with contextlib.suppress(ConnectionClosed):
            if self.awareness.get_local_state() is not None and self.ws.close_code is None:
                self.awareness.set_local_state(None)
                await self.flushed()
        await self._tasks.close()
        self.doc.unobserve(self._subscription)
        self.awareness.unobserve(self._awareness_subscription)
        await self.ws.close()

    async def flushed(self) -> None:
        """Wait until every queued message has been handed to the socket."""
        await self._outgoing.join()

    async def wait_closed(self) -> None:
        """Wait until the server closes the connection."""
        await self.ws.wait_closed()

    async def send_raw(self, frame: bytes) -> None:
        """Send a frame as it is (tests use this to send bad input)."""
        await self.ws.send(frame)

    def set_user(self, state: dict[str, Any]) -> None:
        """Set our awareness state (e.g. ``{"user": {"name": ...}}``); peers see it."""
        self.awareness.set_local_state(state)

    def _on_local_update(self, event: pycrdt.TransactionEvent) -> None:
        if not self._remote:
            self._outgoing.put_nowait(protocol.update_message(event.update))

    def _on_awareness(self, topic: str, change: tuple[dict[str, Any], Any]) -> None:
        changes, origin = change
        if topic != "update" or origin != "local":
            return
        ids = changes["added"] + changes["updated"] + changes["removed"]
        update = self.awareness.encode_awareness_update(ids)
        self._outgoing.put_nowait(protocol.awareness_message(update))

    def _apply(self, update: bytes) -> None:
        self._remote = True
        try:
            self.doc.apply_update(update)
        finally:
            self._remote = False

    async def _write(self) -> None:
        while True:
            frame = await self._outgoing.get()
            try:
                await self.ws.send(frame)
            except ConnectionClosed:
                pass  # nothing more reaches the server; keep draining so flushed() returns
            finally:
                self._outgoing.task_done()

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                if isinstance(frame, str):
                    raise CollabError("the server sent a text frame")
                self.received += 1
                self._handle(frame)
        except ConnectionClosed:
            pass

    def _handle(self, frame: bytes) -> None:
        message = protocol.parse(frame)
        if isinstance(message, protocol.SyncMessage):
            if message.subtype == protocol.SYNC_STEP1:
                diff = self.doc.get_update(message.data)
                self._outgoing.put_nowait(protocol.sync_step2(diff))
            else:
                self._apply(message.data)
                if message.subtype == protocol.SYNC_STEP2:
                    self.synced.set()
        elif isinstance(message, protocol.AwarenessMessage):
            self.awareness.apply_awareness_update(message.update, "remote")
        elif isinstance(message, protocol.AuthMessage):
            reader = protocol.Reader(frame)
            reader.var_uint("message type")
            reader.var_uint("auth type")
            self.denied.append(reader.var_string("reason"))
        elif isinstance(message, protocol.QueryAwareness):
            states = list(self.awareness.states)
            update = self.awareness.encode_awareness_update(states)
            self._outgoing.put_nowait(protocol.awareness_message(update))


@contextlib.asynccontextmanager
async def connect(
    base_url: str,
    room: str,
    *,
    token: str | None = None,
    doc: pycrdt.Doc[Any] | None = None,
    in_query: bool = False,
    max_size: int | None = 64 * 1024 * 1024,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[RoomClient]:
    """Join ``room`` at ``base_url`` (``ws://host:port``, or ``wss://`` behind TLS) with a
    hub token.

    The token travels as ``Authorization: token <t>``, or as ``?token=`` with ``in_query``
    (as browsers must). ``ssl_context`` checks a ``wss://`` server's certificate (default:
    the system's trusted authorities).
    """
    url = f"{base_url.rstrip('/')}/collab/{room}"
    headers = {}
    if token is not None:
        if in_query:
            url += f"?token={token}"
        else:
            headers["Authorization"] = f"token {token}"
    tls: dict[str, Any] = {"ssl": ssl_context} if ssl_context is not None else {}
    async with ws_connect(
        url, additional_headers=headers, compression=None, max_size=max_size, proxy=None, **tls
    ) as ws:
        joined = RoomClient(ws, doc if doc is not None else pycrdt.Doc())
        await joined.start()
        try:
            yield joined
        finally:
            await joined.close()
