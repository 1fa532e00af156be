"""Git clients that stop taking part, with valid credentials: a push that sends a few bytes
and then nothing, a fetch that asks for a large pack and never reads it. The hub gives up
after ``project_git_timeout_s``, drops the connection, moves no ref and records no push, and
frees what served the request (a worker thread of ``project_git_threads``, a git process),
so real clones and pushes go on working even after as many stalled clients as threads."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web_protocol
from yarl import URL

from events import store
from hub.projects import git_http
from tests.helpers import wait_for
from tests.integration.git_client import Git, with_token
from tests.integration.projects_fixtures import ProjectsHub, open_projects_hub
from tests.integration.test_projects_git import FILES, pushes, refs, same_tree
from tests.integration.test_projects_upload_pack import pkt, upload_packs

pytestmark = [pytest.mark.integration, pytest.mark.interop]

TIMEOUT_S = 1.0
THREADS = 2
# how long after its client went quiet the hub may take to drop it
BOUND_S = TIMEOUT_S + 5
STALLED_REF = "refs/heads/stalled"


@pytest.fixture
def git(tmp_path: Path) -> Git:
    return Git(tmp_path / "home")


@pytest.fixture(params=[True, False], ids=["native", "dulwich"])
async def slow_hub(
    request: pytest.FixtureRequest, event_store: store.EventStore, tmp_path: Path
) -> AsyncIterator[ProjectsHub]:
    async with open_projects_hub(
        event_store,
        tmp_path / "data",
        project_git_timeout_s=TIMEOUT_S,
        project_git_threads=THREADS,
        project_git_native=request.param,
    ) as hub:
        yield hub


class Serving:
    """Counts the git requests that hold one of the hub's worker threads (``git_http.serve``,
    where dulwich serves a push, a ref advertisement or, without native git, a fetch)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.peak = 0
        self.ended = 0
        original = git_http.serve

        def serve(*args: Any, **kwargs: Any) -> None:
            with self._lock:
                self.now += 1
                self.peak = max(self.peak, self.now)
            try:
                original(*args, **kwargs)
            finally:
                with self._lock:
                    self.now -= 1
                    self.ended += 1

        monkeypatch.setattr(git_http, "serve", serve)


def connections(hub: ProjectsHub) -> list[web_protocol.RequestHandler]:
    """The connections the hub holds (one it closed stays until its socket is closed, which
    may wait for the client to take what is still buffered for it)."""
    server = hub.client.server.runner.server
    assert server is not None
    return server.connections


def connections_of(hub: ProjectsHub, ports: set[int]) -> set[web_protocol.RequestHandler]:
    """The hub's connections from the clients at ``ports``."""
    return {
        handler
        for handler in connections(hub)
        if (transport := handler.transport) is not None
        and transport.get_extra_info("peername")[1] in ports
    }


def serving_git(hub: ProjectsHub) -> list[int]:
    """The git upload-pack processes serving the hub's projects (not the pack-objects each
    one runs)."""
    found = []
    for pid in upload_packs(hub.data_dir):
        try:
            argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # it has just gone
        if b"upload-pack" in argv:
            found.append(pid)
    return found


@dataclass
class Client:
    """A raw HTTP/1.1 connection to the hub."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @property
    def port(self) -> int:
        port: int = self.writer.get_extra_info("sockname")[1]
        return port

    async def until_closed(self) -> bytes:
        """All the hub sends until it closes the connection."""
        data = bytearray()
        try:
            while chunk := await self.reader.read(65536):
                data += chunk
        except ConnectionResetError:
            pass  # an abort with unread bytes on our side: closed all the same
        return bytes(data)

    def close(self) -> None:
        self.writer.close()


async def connect(hub: ProjectsHub, *, receive_buffer: int | None = None) -> Client:
    """A connection to the hub; a small ``receive_buffer`` makes a client that stops reading
    fill up the hub's side quickly."""
    url = URL(hub.base_url)
    assert url.host is not None
    assert url.port is not None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (url.host, url.port))
    except BaseException:
        sock.close()
        raise
    reader, writer = await asyncio.open_connection(sock=sock)
    return Client(reader, writer)


def request_head(hub: ProjectsHub, path: str, token: str, **headers: str) -> bytes:
    basic = base64.b64encode(f"git:{token}".encode()).decode()
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {URL(hub.base_url).host}",
        f"Authorization: Basic {basic}",
        *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def stalled_push(
    hub: ProjectsHub, token: str, sent: bytes, ports: set[int]
) -> tuple[float, bytes]:
    """A push that sends one chunk of its body, ``sent``, and then nothing (its port added to
    ``ports``): how long after that the hub took to close the connection, and what it said."""
    client = await connect(hub)
    ports.add(client.port)
    try:
        client.writer.write(
            request_head(
                hub,
                "/hub/git/alice/demo.git/git-receive-pack",
                token,
                Content_Type="application/x-git-receive-pack-request",
                Transfer_Encoding="chunked",
            )
            + f"{len(sent):x}\r\n".encode()
            + sent
            + b"\r\n"
        )
        await client.writer.drain()
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        reply = await asyncio.wait_for(client.until_closed(), BOUND_S + 15)
        return loop.time() - quiet_since, reply
    finally:
        client.close()


async def test_a_push_that_stops_sending_is_dropped_and_frees_its_worker(
    slow_hub: ProjectsHub,
    git: Git,
    tmp_path: Path,
    pool: asyncpg.Pool[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub = slow_hub
    alice = await hub.user_token("alice")
    url = with_token((await hub.project(alice, "demo"))["clone_url"], alice)
    work = tmp_path / "work"
    first = await git.new_repo(work, FILES)
    await git.ok("push", "-q", url, "main", cwd=work)
    serving = Serving(monkeypatch)

    command = pkt(f"{'0' * 40} {'1' * 40} {STALLED_REF}\0report-status\n".encode())
    # one stops inside its list of commands, the other inside its pack (3 objects announced)
    mid_command = command[:30]
    mid_pack = command + b"0000" + b"PACK\x00\x00\x00\x02\x00\x00\x00\x03\x9a"
    ports: set[int] = set()
    stalled = [
        asyncio.create_task(stalled_push(hub, alice, sent, ports))
        for sent in (mid_command, mid_pack)
    ]
    # both hold a worker: the pool (THREADS of them) is full of silent clients
    await wait_for(lambda: serving.peak == THREADS, timeout_s=BOUND_S)
    held = connections_of(hub, ports)
    assert len(held) == len(stalled)

    # a real push and a clone, started while the pool is full, get their turn
    second = await git.commit(work, {"week2/more.ipynb": b"{}\n"}, "week 2")
    await git.ok("push", "-q", url, "main", cwd=work, timeout=60)
    clone = tmp_path / "clone"
    await git.ok("clone", "-q", url, str(clone), timeout=60)
    assert await git.head(clone) == second
    assert same_tree(work, clone)

    for task in stalled:
        quiet_for, reply = await task
        assert quiet_for < BOUND_S, f"the hub waited {quiet_for:.1f} s on a silent push"
        # Nothing was answered: the answer begins with its first bytes (never, here, as the
        # pack never came), so that proxies pass a push's body on (git_http.Bridge).
        assert reply == b""
    await wait_for(lambda: not held & set(connections(hub)), timeout_s=BOUND_S)
    await wait_for(lambda: serving.now == 0, timeout_s=BOUND_S)
    # the pack cut short went with its quarantine directory (hub/projects/packs.py)
    assert list(hub.data_dir.glob("projects/*.git/objects/incoming-*")) == []
    assert list(hub.data_dir.glob("projects/*.git/**/tmp_pack_*")) == []

    assert await refs(pool) == {"refs/heads/main": second}
    recorded = await pushes(pool)
    assert [p["refs"][0]["new"] for p in recorded] == [first, second]


async def stalled_fetch(hub: ProjectsHub, token: str, want: str) -> Client:
    """A fetch that sends its wants and then never reads the pack."""
    client = await connect(hub, receive_buffer=4096)
    body = (
        pkt(f"want {want} side-band-64k thin-pack ofs-delta\n".encode()) + b"0000" + pkt(b"done\n")
    )
    client.writer.write(
        request_head(
            hub,
            "/hub/git/alice/big.git/git-upload-pack",
            token,
            Content_Type="application/x-git-upload-pack-request",
            Content_Length=str(len(body)),
        )
        + body
    )
    await client.writer.drain()
    return client


async def test_a_fetch_that_stops_reading_is_dropped_and_frees_what_served_it(
    slow_hub: ProjectsHub,
    git: Git,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub = slow_hub
    native = hub.settings.project_git_native
    alice = await hub.user_token("alice")
    url = with_token((await hub.project(alice, "big"))["clone_url"], alice)
    work = tmp_path / "work"
    # far more than the socket buffers between the hub and a client that does not read
    head = await git.new_repo(work, {"data.bin": os.urandom(12 * 1024 * 1024)})
    await git.ok("push", "-q", url, "main", cwd=work, timeout=120)
    serving = Serving(monkeypatch)

    clients = [await stalled_fetch(hub, alice, head) for _ in range(THREADS)]
    try:
        if native:  # both hold one of git's THREADS slots, each with its git process
            await wait_for(lambda: len(serving_git(hub)) == THREADS, timeout_s=BOUND_S)
        else:  # both hold a worker thread
            await wait_for(lambda: serving.peak == THREADS, timeout_s=BOUND_S)
        held = connections_of(hub, {client.port for client in clients})
        assert len(held) == THREADS

        # the hub's writes stall; it gives up and lets go of git, the thread and the connection
        # (a few seconds go to making the part of the pack that fills the sockets' buffers)
        await wait_for(lambda: not upload_packs(hub.data_dir), timeout_s=BOUND_S + 10)
        await wait_for(lambda: serving.now == 0, timeout_s=BOUND_S + 10)
        await wait_for(lambda: not held & set(connections(hub)), timeout_s=BOUND_S + 10)
        snapshots = hub.data_dir / "projects" / ".serving"
        await wait_for(lambda: not list(snapshots.glob("run-*/*")), timeout_s=BOUND_S)
    finally:
        for client in clients:
            client.close()

    # with as many stalled fetches as threads (and slots for git) behind it, a clone works
    clone = tmp_path / "clone"
    await git.ok("clone", "-q", url, str(clone), timeout=60)
    assert same_tree(work, clone)
