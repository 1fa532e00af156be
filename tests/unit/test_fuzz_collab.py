"""Fuzzing the y-websocket frames a client sends: the parser, then a room (no database).

Whatever bytes arrive, ``protocol.parse`` returns a message or raises ``ProtocolError`` (never
another exception, never a hang, never an allocation the frame's declared lengths ask for),
and a room either takes the frame or refuses it with ``ConnectionRefused``, and goes on: a
good update still applies, and the log rebuilds the room's document. The live-room half over
a real WebSocket is tests/integration/test_fuzz_collab_live.py. Budget: tests/fuzzing.py.
"""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from typing import Any

import pycrdt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from collab import access, errors, protocol, room
from collab.limits import Limits
from tests import fuzzing
from tests.fuzzing import var_uint
from tests.unit.test_collab_room import MemoryLog, NullSink


def _sample_updates() -> list[bytes]:
    doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=5)
    doc["t"] = text = pycrdt.Text()
    doc["m"] = shared_map = pycrdt.Map()
    doc["a"] = array = pycrdt.Array()
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    text += "hello"
    shared_map["x"] = 1
    array.append("y")
    del text[1:3]
    shared_map["nested"] = pycrdt.Map({"k": [1, 2]})
    return [*updates, doc.get_update(), doc.get_state()]


UPDATES = _sample_updates()
AWARENESS = [
    var_uint(1) + var_uint(7) + var_uint(3) + var_uint(len(s)) + s
    for s in (b'{"user":{"name":"a"}}', b"null", b"{}")
]


def _frames() -> list[bytes]:
    frames = [protocol.update_message(u) for u in UPDATES]
    frames += [bytes((protocol.SYNC, protocol.SYNC_STEP2)) + var_uint(len(u)) + u for u in UPDATES]
    frames += [protocol.sync_step1(pycrdt.Doc()), protocol.awareness_message(AWARENESS[0])]
    frames += [protocol.awareness_message(a) for a in AWARENESS[1:]]
    return [*frames, bytes((protocol.QUERY_AWARENESS,)), bytes((protocol.AUTH, 0))]


FRAMES = _frames()

# lib0 edge cases: overlong varints, lengths of 2**32 .. 2**62, a frame cut anywhere
edge_frames = st.one_of(
    st.builds(
        lambda kind, sub, n, tail: bytes((kind, sub)) + var_uint(n) + tail,
        st.sampled_from((protocol.SYNC, protocol.AWARENESS)),
        st.integers(0, 3),
        st.one_of(st.integers(0, 300), st.integers(2**31, 2**63 - 1)),
        st.binary(max_size=16),
    ),
    st.builds(lambda n, tail: b"\x80" * n + tail, st.integers(1, 40), st.binary(max_size=4)),
    st.builds(
        lambda count, body: bytes((protocol.AWARENESS,)) + var_uint(len(body) + 1) + count + body,
        st.sampled_from((b"\x01", b"\x7f", b"\xff\xff\xff\xff\x0f")),
        st.binary(max_size=24),
    ),
)
any_frame = st.one_of(st.binary(max_size=64), fuzzing.mutated(FRAMES), edge_frames)


@given(any_frame)
@fuzzing.budget(400)
def test_the_parser_returns_a_message_or_a_protocol_error(frame: bytes) -> None:
    refused: errors.ProtocolError | None = None
    try:
        message = protocol.parse(frame)
    except errors.ProtocolError as exc:
        refused = exc
    if refused is not None:
        assert refused.code == errors.BAD_MESSAGE
        assert refused.reason
        assert len(refused.reason.encode()) <= errors.MAX_REASON_BYTES
        return
    if isinstance(message, protocol.SyncMessage):
        assert len(message.data) < len(frame)
    elif isinstance(message, protocol.AwarenessMessage):
        for _client, _clock, state in message.entries:
            assert state is None or isinstance(state, dict)


@pytest.mark.parametrize("declared", [2**32, 2**62, 2**63 - 1])
def test_a_huge_declared_length_allocates_nothing(declared: int) -> None:
    frame = bytes((protocol.SYNC, protocol.SYNC_UPDATE)) + var_uint(declared) + b"abc"
    tracemalloc.start()
    try:
        with pytest.raises(errors.ProtocolError, match=f"{declared} bytes announced, 3 present"):
            protocol.parse(frame)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


def _good_update(client_id: int, text: str) -> bytes:
    doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=client_id)
    doc["t"] = t = pycrdt.Text()
    t += text
    return doc.get_update()


def _feed(frames: list[bytes]) -> tuple[bytes, bytes, list[int]]:
    """A room with a writer and a read-only reader fed ``frames`` (alternately), then a good
    update: the room's state, the state the log rebuilds, and the close codes seen."""

    async def run() -> tuple[bytes, bytes, list[int]]:
        log = MemoryLog()
        shared = room.Room("fuzz", log, Limits(rate_burst=10**6))  # type: ignore[arg-type]
        refusals: list[errors.ConnectionRefused] = []
        writer = access.Participant("user", "w", True)
        reader = access.Participant("user", "r", False)
        for i, frame in enumerate(frames):
            conn = room.Connection(writer if i % 2 == 0 else reader, NullSink(), shared.limits)
            shared.join(conn)
            try:
                shared.receive(conn, frame)
            except errors.ConnectionRefused as exc:
                refusals.append(exc)
                shared.drop(conn, exc.code, exc.reason)
            shared.leave(conn)
        after = room.Connection(writer, NullSink(), shared.limits)
        shared.join(after)
        shared.receive(after, protocol.update_message(_good_update(99, "still here")))
        await shared.flushed()
        rebuilt: pycrdt.Doc[Any] = pycrdt.Doc()
        for update in log.updates:
            rebuilt.apply_update(update)
        assert "still here" in str(shared.doc.get("t", type=pycrdt.Text))
        assert all(len(r.reason.encode()) <= errors.MAX_REASON_BYTES for r in refusals)
        state = (shared.doc.get_state(), rebuilt.get_state(), [r.code for r in refusals])
        await shared.close()
        return state

    return asyncio.run(run())


@given(st.lists(any_frame, min_size=1, max_size=12))
@fuzzing.budget(150)
def test_a_room_takes_or_refuses_any_frames_and_goes_on(frames: list[bytes]) -> None:
    live, rebuilt, codes = _feed(frames)
    assert set(codes) <= {errors.BAD_MESSAGE, errors.TOO_LARGE}
    assert live == rebuilt


def test_regression_an_update_that_panics_yrs_is_refused_and_changes_nothing() -> None:
    # Found by fuzzing (test_a_room_takes_or_refuses_any_frames_and_goes_on): after the first
    # (mangled but valid) update, yrs 0.28 panics decoding the second ("called
    # `Option::unwrap()` on a `None` value", update.rs), which pyo3 raises as a
    # BaseException that went past the room's `except ValueError` and out of the handler.
    first = b"\x01\x02\x05\x00\x04\x01\x01t\x05hello(\x01\x01m\x01x\x01|?\x80\x00\n\x00"
    panics = b"\x01\x00\x05L\x00\x04\x01\x01t\x05wello(\x01\x01m\x01x\x01|?\x80\x00\x91\x00\x00"

    async def run() -> None:
        log = MemoryLog()
        shared = room.Room("panic", log, Limits())  # type: ignore[arg-type]
        conn = room.Connection(access.Participant("user", "w", True), NullSink(), shared.limits)
        shared.join(conn)
        shared.receive(conn, protocol.update_message(first))
        await shared.flushed()
        before = shared.doc.get_update()
        with pytest.raises(errors.ProtocolError, match="update does not apply") as raised:
            shared.receive(conn, protocol.update_message(panics))
        assert raised.value.code == errors.BAD_MESSAGE
        assert shared.doc.get_update() == before  # nothing of it was integrated
        assert log.updates == [first]
        other = room.Connection(access.Participant("user", "v", True), NullSink(), shared.limits)
        shared.join(other)
        shared.receive(other, protocol.update_message(_good_update(7, "ok")))
        await shared.flushed()
        assert len(log.updates) == 2
        await shared.close()

    asyncio.run(run())


def test_awareness_with_huge_ids_and_clocks_is_taken_or_refused_by_name() -> None:
    entries = var_uint(2**63 - 1) + var_uint(2**63 - 1) + var_uint(2) + b"{}"
    frame = protocol.awareness_message(var_uint(1) + entries)
    _live, _rebuilt, codes = _feed([frame, frame])
    assert set(codes) <= {errors.BAD_MESSAGE}
    assert json.loads("{}") == {}
