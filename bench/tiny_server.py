"""A tiny single-user server stand-in for ``bench/spawn_proxy.py``, run by both hubs' spawners.

It honours JupyterHub's spawner contract as far as a hub checks it: it listens on
``JUPYTERHUB_SERVICE_URL`` and answers every path (``{prefix}api`` included) with 200 and a
1 KB body. It writes the URL it serves to ``service_url.txt`` in its working directory, so
that the benchmark can point configurable-http-proxy at the very same backend.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

BODY = b"x" * 1024


async def handle(request: web.BaseRequest) -> web.Response:
    return web.Response(body=BODY, content_type="text/plain")


async def main() -> None:
    url = os.environ["JUPYTERHUB_SERVICE_URL"]
    parts = urlsplit(url)
    server = web.Server(handle)
    runner = web.ServerRunner(server, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, parts.hostname, parts.port, backlog=1024).start()
    Path("service_url.txt").write_text(url)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
