"""A LISTEN connection cut without a reset (a network partition: no FIN, no RST) is noticed by
its ping and replaced, against real PostgreSQL; until then nothing knows that notifications
are lost (the token cache serves from memory only while ``listening`` is set)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest

from events import notify
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


class Partition:
    """A TCP forwarder to PostgreSQL whose open connections can be frozen: bytes stop moving
    both ways, and neither end is told."""

    def __init__(self, target: str | tuple[str, int]) -> None:
        self._target = target  # a Unix socket's path, or (host, port)
        self.frozen: list[asyncio.Event] = []
        self.released = asyncio.Event()  # at the end: frozen pipes let go, and close
        self.pipes: list[asyncio.Task[None]] = []

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, frozen: asyncio.Event
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if frozen.is_set():
                    await self.released.wait()  # hold everything, close nothing
                    return
                writer.write(data)
                await writer.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.pipes.append(task)
        if isinstance(self._target, str):
            up_reader, up_writer = await asyncio.open_unix_connection(self._target)
        else:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        frozen = asyncio.Event()
        self.frozen.append(frozen)
        both = [
            asyncio.ensure_future(self._pipe(reader, up_writer, frozen)),
            asyncio.ensure_future(self._pipe(up_reader, writer, frozen)),
        ]
        try:
            # one way ends (a close, or the release): the connection ends both ways
            await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in both:
                pipe.cancel()
            await asyncio.gather(*both, return_exceptions=True)
            for w in (writer, up_writer):
                w.close()

    def freeze_all(self) -> None:
        for frozen in self.frozen:
            frozen.set()


@contextlib.asynccontextmanager
async def partition_to(db_url: str) -> AsyncIterator[tuple[Partition, str]]:
    # the embedded cluster listens on a Unix socket (?host=<dir>&port=<n>), a container on TCP
    parts = urlsplit(db_url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    user = parts.netloc.rsplit("@", 1)[0] if "@" in parts.netloc else ""
    if parts.hostname:
        partition = Partition((parts.hostname, parts.port or 5432))
    else:
        partition = Partition(f"{query.pop('host')}/.s.PGSQL.{query.pop('port', '5432')}")
    server = await asyncio.start_server(partition._serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    netloc = f"{user}@127.0.0.1:{port}" if user else f"127.0.0.1:{port}"
    url = urlunsplit(parts._replace(netloc=netloc, query=urlencode(query)))
    try:
        yield partition, url
    finally:
        server.close()
        partition.released.set()
        await asyncio.wait_for(asyncio.gather(*partition.pipes, return_exceptions=True), 10)


async def test_a_listen_connection_that_stops_answering_is_replaced(db_url: str) -> None:
    heard: list[str | None] = []
    async with partition_to(db_url) as (partition, url):
        channel = notify.Channel(url, "chronohub_test_liveness", heard.append, ping_s=0.3)
        async with channel:
            await wait_for(channel.listening.is_set, timeout_s=10)
            assert heard == [None]  # (re)connected: whatever was sent meanwhile is unknown
            partition.freeze_all()
            # the ping finds it silent: no longer listening, then listening on a new one
            await wait_for(lambda: not channel.listening.is_set(), timeout_s=5)
            await wait_for(channel.listening.is_set, timeout_s=10)
            assert heard == [None, None]
