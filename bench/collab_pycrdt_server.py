"""The Python peer of the collaboration benchmark: pycrdt-websocket's server on ``websockets``.

Run by ``bench/collab.py`` as ``python bench/collab_pycrdt_server.py <port>``. Rooms are kept
when their last client leaves (``auto_clean_rooms=False``), so idle rooms stay loaded as the
Node server and chronohub keep them. The channel adapter maps a ``websockets`` connection onto
pycrdt's ``Channel`` protocol (pycrdt-websocket ships adapters for ASGI and Django only).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

from pycrdt.websocket import WebsocketServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


class WebsocketsChannel:
    """One ``websockets`` server connection as a pycrdt ``Channel``."""

    def __init__(self, ws: ServerConnection) -> None:
        self._ws = ws
        assert ws.request is not None
        self._path = ws.request.path

    @property
    def path(self) -> str:
        return self._path

    def __aiter__(self) -> WebsocketsChannel:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    async def send(self, message: bytes) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._ws.send(message)

    async def recv(self) -> bytes:
        message = await self._ws.recv()
        return message if isinstance(message, bytes) else message.encode()


async def main(port: int) -> None:
    async with WebsocketServer(auto_clean_rooms=False) as server:

        async def handler(ws: ServerConnection) -> None:
            await server.serve(WebsocketsChannel(ws))

        async with serve(handler, "127.0.0.1", port, compression=None, max_size=None):
            print(f"pycrdt-websocket serving on 127.0.0.1:{port}", flush=True)
            await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
