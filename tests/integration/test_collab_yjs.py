"""Interop with real Yjs clients: y-websocket providers in Node.js and the pycrdt client, one room.

The Node packages (yjs, y-websocket, ws) are installed from tests/node/yjs/package-lock.json
by the Makefile before pytest runs.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pycrdt
import pytest

from collab import client
from events import store
from tests.integration.collab_fixtures import CollabHub, serving

pytestmark = [pytest.mark.integration, pytest.mark.interop]

NODE_DIR = Path(__file__).resolve().parents[1] / "node" / "yjs"
SCRIPT = NODE_DIR / "providers.mjs"


class NodeClients:
    """A running ``providers.mjs``: JSON lines out, answers in."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, *args: str) -> NodeClients:
        node = shutil.which("node")
        assert node is not None, "Node.js is needed for the Yjs interop tests"
        assert (NODE_DIR / "node_modules" / "y-websocket").is_dir(), (
            "tests/node/yjs is not installed: run `make test` (it runs npm ci there)"
        )
        process = await asyncio.create_subprocess_exec(
            node,
            str(SCRIPT),
            *args,
            cwd=NODE_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def next(self, timeout_s: float = 30) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout_s)
        if not line:
            stderr = await self.process.stderr.read() if self.process.stderr else b""
            raise AssertionError(f"the Node clients ended early: {stderr.decode()[-2000:]}")
        message: dict[str, Any] = json.loads(line)
        assert message["event"] != "timeout", message
        return message

    async def say(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def finish(self) -> None:
        try:
            code = await asyncio.wait_for(self.process.wait(), 30)
        finally:
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
        assert code == 0


def text_of(doc: pycrdt.Doc[Any]) -> str:
    return str(doc.get("t", type=pycrdt.Text))


async def test_two_yjs_providers_and_the_pycrdt_client_edit_one_room(
    collab_hub: CollabHub,
) -> None:
    token = await collab_hub.token("alice")
    node = await NodeClients.start("together", collab_hub.url, "interop", token)
    try:
        edited = await node.next()
        assert edited == {"event": "edited", "text": "A1 B1 "}
        async with client.connect(collab_hub.url, "interop", token=token) as py:
            await asyncio.wait_for(py.synced.wait(), 10)
            assert text_of(py.doc) == "A1 B1 "
            text = py.doc.get("t", type=pycrdt.Text)
            text += "PY"
            await py.flushed()
            await node.say("A1 B1 PY")
            done = await node.next()
        assert done["a"] == done["b"] == done["late"] == "A1 B1 PY"
        # The late joiner saw both providers at once, not at their next renewal; each under the
        # name the hub authenticated (alice's token), not the one it claimed (node-a, node-b).
        # Its own state is the one it set (node-late): the hub's echo of it is not newer.
        assert done["users"].count("alice") >= 2, done
        assert "node-late" in done["users"]
        assert not {"node-a", "node-b"} & set(done["users"])
    finally:
        await node.finish()


async def test_yjs_edits_survive_a_server_restart(
    event_store: store.EventStore, db_url: str
) -> None:
    async with serving(event_store, db_url) as first:
        token = await first.token("alice")
        writer = await NodeClients.start("write", first.url, "durable", token, "before restart")
        assert (await writer.next())["text"] == "before restart"
        await writer.finish()
    # A new hub on the same database: the room loads from PostgreSQL.
    async with serving(event_store, db_url) as second:
        reader = await NodeClients.start("read", second.url, "durable", token)
        assert (await reader.next())["text"] == "before restart"
        await reader.finish()
        async with client.connect(second.url, "durable", token=token) as py:
            await asyncio.wait_for(py.synced.wait(), 10)
            assert text_of(py.doc) == "before restart"
            py.doc.get("t", type=pycrdt.Text).insert(0, "still here, ")
            await py.flushed()
        more = await NodeClients.start("write", second.url, "durable", token, "!")
        assert (await more.next())["text"] == "still here, before restart!"
        await more.finish()


async def test_yjs_providers_on_two_hub_processes_see_each_other_come_and_go(
    collab_hub: CollabHub, event_store: store.EventStore, db_url: str
) -> None:
    """Awareness crosses processes: real y-websocket providers, one on each of two hubs."""
    token = await collab_hub.token("alice")
    async with serving(event_store, db_url) as other:
        for hub in (collab_hub, other):
            assert hub.rooms.listening is not None
            await asyncio.wait_for(hub.rooms.listening.wait(), 10)
        node = await NodeClients.start("aware", collab_hub.url, "aware-yjs", token, other.url)
        try:
            aware = await node.next()
            # each sees the other under alice's name (the hub stamps it over the claimed one),
            # and itself as it set itself
            assert aware == {"event": "aware", "a": ["alice", "node-a"], "b": ["alice", "node-b"]}
            left = await node.next()
            assert left["b"] == ["node-b"]
            assert left["ms"] < 2000  # at once, not after the 30 s outdated timeout
        finally:
            await node.finish()
