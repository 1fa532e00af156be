"""A git server on loopback for the import tests: the real ``git http-backend`` (git's own
smart HTTP, not dulwich's) behind a small aiohttp CGI wrapper, plus two misbehaving routes:
``/stall/…`` never answers and ``/redirect/…`` sends the client to another address."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import test_utils, web

UPSTREAM = "upstream.git"


@dataclass
class Upstream:
    """The server: repositories under ``root``, served at ``base_url``."""

    root: Path
    server: test_utils.TestServer | None = None
    redirect_to: str = "http://169.254.169.254/latest"
    stalled: int = 0
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    def url(self, name: str = UPSTREAM) -> str:
        """The URL of repository ``name``."""
        return f"{self.base_url}/{name}"

    async def cgi(self, request: web.Request) -> web.StreamResponse:
        """Run ``git http-backend`` for the request (bodies are small here: read whole)."""
        body = await request.read()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self.root),
            "REQUEST_METHOD": request.method,
            "PATH_INFO": request.path,
            "QUERY_STRING": request.query_string,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
        }
        if protocol := request.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = protocol
        process = await asyncio.create_subprocess_exec(
            "git",
            "http-backend",
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, _ = await process.communicate(body)
        head, _, payload = out.partition(b"\r\n\r\n")
        status = 200
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers[name] = value.strip()
        return web.Response(status=status, body=payload, headers=headers)

    async def stall(self, request: web.Request) -> web.StreamResponse:
        """Never answer (until the server closes)."""
        self.stalled += 1
        await self._release.wait()
        return web.Response(status=503)

    async def redirect(self, request: web.Request) -> web.StreamResponse:
        """Send the client to ``redirect_to``, keeping the rest of the path."""
        rest = request.match_info["rest"]
        query = f"?{request.query_string}" if request.query_string else ""
        raise web.HTTPFound(f"{self.redirect_to}/{rest}{query}")

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes(
            [
                web.route("*", "/stall/{rest:.*}", self.stall),
                web.route("*", "/redirect/{rest:.*}", self.redirect),
                web.route("*", "/{rest:.*}", self.cgi),
            ]
        )
        return app


@contextlib.asynccontextmanager
async def serve_upstream(root: Path) -> AsyncIterator[Upstream]:
    """The server on a loopback port, for the duration of the block."""
    root.mkdir(parents=True, exist_ok=True)
    upstream = Upstream(root)
    upstream.server = test_utils.TestServer(upstream.app(), host="127.0.0.1")
    await upstream.server.start_server()
    try:
        yield upstream
    finally:
        upstream._release.set()
        await upstream.server.close()
