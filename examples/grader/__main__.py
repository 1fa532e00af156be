"""Run the grader service: ``PYTHONPATH=examples python -m grader``.

JupyterHub's service environment says where the hub is and who we are
(``JUPYTERHUB_API_URL``, ``JUPYTERHUB_API_TOKEN``, ``JUPYTERHUB_SERVICE_URL``,
``JUPYTERHUB_SERVICE_PREFIX``, and for HubOAuth ``JUPYTERHUB_CLIENT_ID`` and
``JUPYTERHUB_OAUTH_CALLBACK_URL``); ``GRADER_DATA_DIR`` (default: the working directory)
holds ``grader.sqlite`` and the cookie secret.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from jupyterhub.services.auth import HubOAuthCallbackHandler
from tornado import httpserver, netutil, web

from . import gradebook, hubapi, pages, stream

log = logging.getLogger("grader")
HERE = Path(__file__).parent


def cookie_secret(data: Path) -> bytes:
    """The secret that signs our cookies, kept in the data directory so that a restart does
    not sign everyone out (made on first start, readable by us only)."""
    path = data / "cookie_secret"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip().encode()


def make_app(service: pages.Service, secret: bytes) -> web.Application:
    """The tornado application under the service's prefix."""
    prefix = service.prefix
    return web.Application(
        [
            *pages.handlers(prefix),
            (prefix + "oauth_callback", HubOAuthCallbackHandler),
        ],
        cookie_secret=secret,
        xsrf_cookies=True,
        template_path=str(HERE / "templates"),
        static_path=str(HERE / "static"),
        static_url_prefix=prefix + "static/",
        grader=service,
    )


@dataclass(frozen=True)
class Config:
    """What the environment says (read before the event loop starts: it touches files)."""

    api_url: str
    token: str
    host: str
    port: int
    prefix: str
    data: Path
    public_git: str


def configure() -> Config:
    """The service's configuration from JupyterHub's service environment."""
    bind = urlsplit(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10103"))
    data = Path(os.environ.get("GRADER_DATA_DIR", ".")).resolve()
    data.mkdir(parents=True, exist_ok=True)
    return Config(
        api_url=os.environ["JUPYTERHUB_API_URL"].rstrip("/"),
        token=os.environ["JUPYTERHUB_API_TOKEN"],
        host=bind.hostname or "127.0.0.1",
        port=bind.port or 0,
        prefix=os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/").rstrip("/") + "/",
        data=data,
        # what people use (JupyterHub 5's JUPYTERHUB_PUBLIC_URL), else the API's own address
        public_git=(
            os.environ.get("JUPYTERHUB_PUBLIC_URL", "").rstrip("/") + "/hub/git"
            if os.environ.get("JUPYTERHUB_PUBLIC_URL")
            else os.environ["JUPYTERHUB_API_URL"].rstrip("/").removesuffix("/api") + "/git"
        ),
    )


async def main(config: Config, book: gradebook.Gradebook, secret: bytes) -> None:
    """Serve the pages and follow the event stream until SIGTERM or SIGINT."""
    api_url, token, prefix = config.api_url, config.token, config.prefix
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        hub = hubapi.Hub(session, api_url, token)
        service = pages.Service(hub, book, prefix, config.public_git)
        server = httpserver.HTTPServer(make_app(service, secret))
        sockets = netutil.bind_sockets(config.port, config.host)
        server.add_sockets(sockets)
        host, port = sockets[0].getsockname()[:2]
        print(f"grader serving at http://{host}:{port}{prefix}", flush=True)
        # The two long-lived tasks, owned here: whichever ends first ends the other.
        follower = asyncio.create_task(stream.follow(api_url, token, book), name="follow")
        stopping = asyncio.create_task(stop.wait(), name="stop")
        try:
            await asyncio.wait({follower, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (follower, stopping):
                task.cancel()
            await asyncio.gather(follower, stopping, return_exceptions=True)
            server.stop()
            await server.close_all_connections()
    if not follower.cancelled():
        follower.result()  # the follower's crash, if it crashed


if __name__ == "__main__":
    level = os.environ.get("GRADER_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="grader: %(name)s %(levelname)s %(message)s")
    config = configure()
    book = gradebook.Gradebook(config.data / "grader.sqlite")
    try:
        asyncio.run(main(config, book, cookie_secret(config.data)))
    finally:
        book.close()
