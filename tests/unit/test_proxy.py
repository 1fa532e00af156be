"""The built-in proxy against a real aiohttp backend, without a database: HEAD, pipelined
requests, a target that does not answer, an upgrade the backend refuses, 1xx responses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from hub.proxy import builtin as proxy
from hub.proxy import table
from tests import ports


@pytest.fixture
async def backend() -> AsyncIterator[str]:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"hello {request.path}", headers={"X-Backend": "yes"})

    async def upload(request: web.Request) -> web.Response:
        return web.Response(text=str(len(await request.read())))

    app = web.Application()
    app.add_routes([web.get("/user/a/{tail:.*}", hello), web.post("/user/a/upload", upload)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def front(backend: str) -> AsyncIterator[str]:
    running = proxy.Proxy(f"http://127.0.0.1:{ports.free_port()}")
    running.set_routes(
        [
            table.Route("/user/a/", backend),
            table.Route("/user/dead/", f"http://127.0.0.1:{ports.free_port()}"),
        ]
    )
    host, port = await running.start("127.0.0.1", 0)
    yield f"http://{host}:{port}"
    await running.close()


async def test_head_and_get(front: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.head(front + "/user/a/x") as response:
            assert response.status == 200
            assert response.headers["X-Backend"] == "yes"
        async with session.get(front + "/user/a/x") as response:
            assert await response.text() == "hello /user/a/x"
        async with session.post(
            front + "/user/a/upload", data=b"12345", headers={"Expect": "100-continue"}
        ) as response:
            assert await response.text() == "5"


async def test_pipelined_requests_are_answered_in_order(front: str) -> None:
    host, port = front.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"".join(f"GET /user/a/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(5))
    )
    await writer.drain()
    bodies = []
    for _ in range(5):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        bodies.append((await reader.readexactly(length)).decode())
    writer.close()
    assert bodies == [f"hello /user/a/{i}" for i in range(5)]


async def test_a_target_that_does_not_answer_is_a_503(front: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(front + "/user/dead/x") as response:
            assert response.status == 503
            assert "the server behind /user/dead/ does not answer" in await response.text()
        # The hub's route does not answer either (nothing listens there in this test).
        async with session.get(front + "/hub/") as response:
            assert response.status == 503


async def test_an_upgrade_the_backend_refuses_is_answered_and_closed(front: str) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(front + "/user/a/not-a-socket")
    assert refused.value.status == 200


async def test_malformed_requests_are_a_400(front: str) -> None:
    host, port = front.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    await writer.drain()
    reply = await reader.read()
    writer.close()
    assert reply.startswith(b"HTTP/1.1 400 Bad Request")
