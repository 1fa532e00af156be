"""Fuzzed y-websocket frames sent to a live room over a real WebSocket.

A raw connection sends the frames of tests/unit/test_fuzz_collab.py's strategy, one after
the other, reconnecting whenever the hub closes it. Each close must be a typed refusal (4400
bad message, 4413 too large), never an internal error or a dropped connection; meanwhile two
ordinary clients keep editing and syncing, and at the end a late joiner gets their document
and the stored updates rebuild it. Budget: tests/fuzzing.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pycrdt
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from collab import client, errors, protocol
from collab.limits import Limits
from events import store
from tests import fuzzing
from tests.helpers import wait_for
from tests.integration.collab_fixtures import serving
from tests.unit.test_fuzz_collab import any_frame

pytestmark = pytest.mark.integration

PROBE = bytes((protocol.QUERY_AWARENESS,))


def text_of(doc: pycrdt.Doc[Any]) -> str:
    return str(doc.get("t", type=pycrdt.Text))


async def until_answered_or_closed(ws: ClientConnection) -> int | None:
    """Read until an awareness message (the probe's answer comes as one) or the close; the
    close code, or None while open."""
    try:
        while True:
            frame = await asyncio.wait_for(ws.recv(), 10)
            if isinstance(frame, bytes) and frame[:1] == bytes((protocol.AWARENESS,)):
                return None
    except ConnectionClosed:
        return ws.close_code


async def test_fuzzed_frames_close_only_the_sender_and_the_room_goes_on(
    event_store: store.EventStore, db_url: str
) -> None:
    frames = fuzzing.collect(any_frame, 80)
    limits = Limits(room_grace_s=3600, rate_per_s=10_000, rate_burst=10_000)
    async with serving(event_store, db_url, limits) as hub:
        alice = await hub.token("alice")
        url = f"{hub.url}/collab/fuzz"
        headers = {"Authorization": f"token {alice}"}
        codes: list[int | None] = []
        async with (
            client.connect(hub.url, "fuzz", token=alice) as a,
            client.connect(hub.url, "fuzz", token=alice) as b,
        ):
            await asyncio.wait_for(asyncio.gather(a.synced.wait(), b.synced.wait()), 10)
            fuzzer = await ws_connect(url, additional_headers=headers, compression=None)
            try:
                for i, frame in enumerate(frames):
                    try:
                        await fuzzer.send(frame)
                        await fuzzer.send(PROBE)
                    except ConnectionClosed:
                        pass
                    code = await until_answered_or_closed(fuzzer)
                    if code is not None:
                        codes.append(code)
                        fuzzer = await ws_connect(url, additional_headers=headers)
                    if i % 10 == 9:  # the ordinary clients still edit and sync
                        a.doc.get("t", type=pycrdt.Text).insert(0, f"{i} ")
                        await wait_for(lambda i=i: text_of(b.doc).startswith(f"{i} "))
            finally:
                await fuzzer.close()
            assert set(codes) <= {errors.BAD_MESSAGE, errors.TOO_LARGE}, codes
            assert a.close_code is None
            assert b.close_code is None
            b.doc.get("t", type=pycrdt.Text).insert(0, "last ")
            await wait_for(lambda: text_of(a.doc).startswith("last "))
            expected = text_of(a.doc)
            async with client.connect(hub.url, "fuzz", token=alice) as late:
                await asyncio.wait_for(late.synced.wait(), 10)
                assert text_of(late.doc) == expected
        async with hub.rooms.store.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT data FROM collab_updates WHERE room = 'fuzz' ORDER BY seq"
            )
        rebuilt: pycrdt.Doc[Any] = pycrdt.Doc()
        for row in rows:
            rebuilt.apply_update(row["data"])
        assert text_of(rebuilt) == expected
