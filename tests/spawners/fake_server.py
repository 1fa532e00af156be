"""A deliberately simple (and, on request, faulty) single-user server for the spawner tests.

Usage: ``fake_server.py MODE``, with JupyterHub's spawner environment. Modes:

* ``serve``: listen on JUPYTERHUB_SERVICE_URL; ``{prefix}api`` answers, ``{prefix}echo``
  returns the request it saw, ``{prefix}ws`` echoes websocket messages; the environment it
  was given is written to ``env.json`` in its working directory;
* ``slow``: as ``serve``, after sleeping ``FAKE_DELAY`` seconds (default 2);
* ``exit``: print a line and exit at once with code 3;
* ``hang``: never listen;
* ``ignore-term``: as ``serve``, but ignore SIGTERM (only SIGKILL stops it);
* ``die``: as ``serve``, then exit with code 7 after ``FAKE_DELAY`` seconds (default 0.5).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit


def main() -> None:
    mode = sys.argv[1]
    if mode == "exit":
        print("fake server: giving up at once", flush=True)
        sys.exit(3)
    if mode == "hang":
        while True:
            time.sleep(3600)
    if mode == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if mode == "slow":
        time.sleep(float(os.environ.get("FAKE_DELAY", "2")))
    Path("env.json").write_text(json.dumps(dict(os.environ)))
    asyncio.run(serve(mode))


async def serve(mode: str) -> None:
    from aiohttp import web

    url = urlsplit(os.environ["JUPYTERHUB_SERVICE_URL"])
    prefix = os.environ["JUPYTERHUB_SERVICE_PREFIX"]

    async def api(request: web.Request) -> web.Response:
        return web.json_response({"version": "fake"})

    async def echo(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "path": request.path_qs,
                "headers": dict(request.headers),
                "body_length": len(body),
            }
        )

    async def big(request: web.Request) -> web.StreamResponse:
        size = int(request.query.get("size", "1000000"))
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        chunk = b"x" * 65536
        sent = 0
        while sent < size:
            part = chunk[: min(len(chunk), size - sent)]
            await response.write(part)
            sent += len(part)
        await response.write_eof()
        return response

    async def ws(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        async for message in socket:
            await socket.send_str("echo:" + message.data)
        return socket

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.add_routes(
        [
            web.get(prefix + "api", api),
            web.route("*", prefix + "echo", echo),
            web.get(prefix + "big", big),
            web.get(prefix + "ws", ws),
        ]
    )
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, url.hostname, url.port).start()
    if mode == "die":
        await asyncio.sleep(float(os.environ.get("FAKE_DELAY", "0.5")))
        os._exit(7)
    await asyncio.Event().wait()


if __name__ == "__main__":
    main()
