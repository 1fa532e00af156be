"""``python -m chronohub_publish``: the service, with JupyterHub's service environment.

``JUPYTERHUB_API_URL``, ``JUPYTERHUB_API_TOKEN``, ``JUPYTERHUB_SERVICE_URL`` (where to
listen), ``JUPYTERHUB_SERVICE_PREFIX`` (``/services/publish/``) and HubOAuth's variables;
``PUBLISH_DATA_DIR`` (default: the working directory, ``<data_dir>/services/publish`` for a
managed service) holds its state, mirrors, caches and sites; ``PUBLISH_SANDBOX=false`` runs
dashboards outside their bubblewrap sandbox (unsafe: see ``sandbox.py``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path
from urllib.parse import urlsplit

from tornado import httpserver, netutil

from chronohub_publish import hubapi, publisher, sandbox, web

log = logging.getLogger("publish")


def _data_dir() -> Path:
    return Path(os.environ.get("PUBLISH_DATA_DIR", ".")).resolve()


async def main() -> None:
    api = hubapi.Api(os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"])
    bind = urlsplit(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10103"))
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/publish/").rstrip("/") + "/"
    data_dir = _data_dir()
    sandboxed = sandbox.enabled(os.environ)
    hide = sandbox.hidden_by_hub(os.environ)
    if not sandboxed:
        log.warning(
            "%s=false: dashboards run UNSANDBOXED, as this service's account: a project's"
            " writer can read what the service can (its state, private projects' pages)",
            sandbox.VARIABLE,
        )
    name = os.environ.get("JUPYTERHUB_SERVICE_NAME", "publish")
    pub = publisher.Publisher(data_dir, api, name, sandboxed=sandboxed, hide=hide)
    app = web.make_app(pub, prefix, os.urandom(32))
    sockets = netutil.bind_sockets(bind.port or 0, bind.hostname or "127.0.0.1")
    server = httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    print(f"publish serving at http://{bind.hostname}:{port}{prefix}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Its two loops and the stop signal, owned here: the first to end ends the others, and
    # a loop's crash is raised after the cleanup.
    tasks = {
        asyncio.create_task(pub.follow(), name="follow"),
        asyncio.create_task(pub.refresh(), name="refresh"),
        asyncio.create_task(stop.wait(), name="stop"),
    }
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        server.stop()
        await api.close()
    for task in done:
        if task.get_name() != "stop":
            task.result()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="publish: %(message)s")
    asyncio.run(main())
