"""The floor ``bench/rest_api.py`` holds chronohub's REST API to: a bare aiohttp application.

It answers the three measured requests (``GET /hub/api/users``, ``GET /hub/api/user``,
``POST /hub/api/users/{name}/tokens``) with a constant JSON body of the size chronohub's own
answer had, read from ``BENCH_BARE_SIZES`` (a JSON object: route kind to bytes), and nothing
else: no authentication, no database, no middleware. It runs as chronohub serve does (one
process, uvloop, an ``AppRunner`` without access log), so the CPU it spends per request is
what aiohttp itself costs, and chronohub's over it is what chronohub adds.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from aiohttp import web

KINDS = ("users", "whoami", "token_create")


def body_of(size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes (at least 12)."""
    head = b'{"pad": "'
    tail = b'"}'
    return head + b"x" * max(0, size - len(head) - len(tail)) + tail


def make_app(sizes: dict[str, int]) -> web.Application:
    bodies = {kind: body_of(sizes[kind]) for kind in KINDS}

    def constant(kind: str, status: int) -> web.Handler:
        body = bodies[kind]

        async def handle(request: web.Request) -> web.Response:
            await request.read()  # a POST's body is read, as chronohub reads it
            return web.Response(body=body, status=status, content_type="application/json")

        return handle

    app = web.Application()
    app.router.add_get("/hub/api/", constant("whoami", 200))
    app.router.add_get("/hub/api/users", constant("users", 200))
    app.router.add_get("/hub/api/user", constant("whoami", 200))
    app.router.add_post("/hub/api/users/{name}/tokens", constant("token_create", 201))
    return app


async def main(port: int, sizes: dict[str, int]) -> None:
    runner = web.AppRunner(make_app(sizes), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    sizes = json.loads(os.environ["BENCH_BARE_SIZES"])
    port = int(sys.argv[1])
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(port, sizes))
    else:
        uvloop.run(main(port, sizes))
