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
