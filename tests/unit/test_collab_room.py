"""A room's update path without a database: whatever reaches the document reaches the log."""

from __future__ import annotations

import asyncio
from typing import Any

import pycrdt
from hypothesis import given, settings
from hypothesis import strategies as st

from collab import access, persistence, protocol, room
from collab.limits import Limits


class MemoryLog:
    """Stands in for RoomStore.append: keeps the appended updates in order."""

    def __init__(self) -> None:
        self.updates: list[bytes] = []

    async def append(self, name: str, updates: list[bytes], authors: list[str]) -> Any:
        start = len(self.updates) + 1
        self.updates.extend(updates)
        return persistence.Appended(list(range(start, start + len(updates))), shared=False)


class NullSink:
    def __init__(self) -> None:
        self.written = 0
        self.closed: tuple[int, str] | None = None

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def buffered(self) -> int:
        return 0

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def client_updates(seed_ops: list[tuple[int, str]], clients: int) -> list[list[bytes]]:
    """Each client's updates, in its own order, from (client, text) operations."""
    docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc(client_id=i + 1) for i in range(clients)]
    out: list[list[bytes]] = [[] for _ in range(clients)]
    for i, doc in enumerate(docs):
        doc.observe(lambda event, i=i: out[i].append(event.update))
    for who, text in seed_ops:
        t = docs[who].get("t", type=pycrdt.Text)
        t.insert(len(t), text)
    return out


@given(
    ops=st.lists(st.tuples(st.integers(0, 2), st.text("abc", min_size=1, max_size=3)), max_size=12),
    order=st.randoms(use_true_random=False),
    duplicate=st.booleans(),
)
@settings(max_examples=60, deadline=None)
def test_the_log_rebuilds_the_room_whatever_the_arrival_order(
    ops: list[tuple[int, str]], order: Any, duplicate: bool
) -> None:
    """Updates arrive shuffled across clients (some waiting for a dependency) and repeated;
    the document rebuilt from the appended log always equals the room's."""
    per_client = client_updates(ops, 3)
    arrivals = [u for updates in per_client for u in updates]
    order.shuffle(arrivals)
    if duplicate:
        arrivals += arrivals[: len(arrivals) // 2]

    async def run() -> tuple[str, str]:
        log = MemoryLog()
        shared = room.Room("prop", log, Limits(rate_burst=10_000))  # type: ignore[arg-type]
        conn = room.Connection(access.Participant("user", "a", True), NullSink(), shared.limits)
        shared.join(conn)
        for update in arrivals:
            shared.receive(conn, protocol.update_message(update))
        await shared.flushed()
        rebuilt: pycrdt.Doc[Any] = pycrdt.Doc()
        for update in log.updates:
            rebuilt.apply_update(update)
        return (
            str(shared.doc.get("t", type=pycrdt.Text)),
            str(rebuilt.get("t", type=pycrdt.Text)),
        )

    live, rebuilt = asyncio.run(run())
    assert live == rebuilt
    everything: pycrdt.Doc[Any] = pycrdt.Doc()
    for updates in per_client:
        for update in updates:
            everything.apply_update(update)
    assert live == str(everything.get("t", type=pycrdt.Text))


class FrameSink(NullSink):
    """Keeps what the room writes, to be read back as WebSocket frames."""

    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        super().write(data)
        self.data += data

    def messages(self) -> list[bytes]:
        """The payloads of the unmasked binary frames written so far (lengths under 65,536)."""
        out, pos, data = [], 0, bytes(self.data)
        while pos < len(data):
            assert data[pos] == 0x82
            length, pos = data[pos + 1], pos + 2
            if length == 126:
                length, pos = int.from_bytes(data[pos : pos + 2], "big"), pos + 2
            out.append(data[pos : pos + length])
            pos += length
        return out


@given(
    senders=st.lists(st.integers(0, 2), min_size=1, max_size=30),
    pauses=st.sets(st.integers(0, 29)),
)
@settings(max_examples=60, deadline=None)
def test_each_connection_gets_every_other_ones_updates_in_order(
    senders: list[int], pauses: set[int]
) -> None:
    """Three writers and a reader; updates arrive in one batch or in several (a pause lets
    the room append and broadcast): each writer gets everyone else's updates, the reader
    all of them, each in the order they arrived, one frame per update."""
    docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc(client_id=i + 1) for i in range(3)]
    sent: list[tuple[int, bytes]] = []

    async def run() -> list[FrameSink]:
        shared = room.Room("fan", MemoryLog(), Limits(rate_burst=10_000))  # type: ignore[arg-type]
        sinks = [FrameSink() for _ in range(4)]
        conns = [
            room.Connection(access.Participant("user", f"u{i}", True), sink, shared.limits)
            for i, sink in enumerate(sinks)
        ]
        for conn in conns:
            shared.join(conn)
        await asyncio.sleep(0)  # the join messages written
        for sink in sinks:
            sink.data.clear()
        for i, who in enumerate(senders):
            before = docs[who].get_state()
            docs[who].get("a", type=pycrdt.Array).append(i)
            frame = protocol.update_message(docs[who].get_update(before))
            sent.append((who, frame))
            shared.receive(conns[who], frame)
            if i in pauses:
                await shared.flushed()
        await shared.flushed()
        await asyncio.sleep(0)  # the queued frames written
        return sinks

    sinks = asyncio.run(run())
    for index, sink in enumerate(sinks):
        assert sink.messages() == [frame for who, frame in sent if who != index]
