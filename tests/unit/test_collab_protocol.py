"""The y-websocket protocol, flood limit, room access and snapshot squashing (no database)."""

from __future__ import annotations

import re
from typing import Any

import pycrdt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets import frames as ws_frames

from collab import access, errors, persistence, protocol
from collab.limits import TokenBucket
from hub.auth import collab_access, scopes


def text_update(text: str, client_id: int = 1) -> bytes:
    doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=client_id)
    doc["t"] = t = pycrdt.Text()
    t += text
    return doc.get_update()


def test_the_reference_bytes_parse() -> None:
    # Bytes from the protocol reference: client 1 inserts "hi" into Y.Text "t".
    update = bytes([1, 1, 1, 0, 4, 1, 1, 116, 2, 104, 105, 0])
    assert protocol.parse(bytes([0, 2, 12]) + update) == protocol.SyncMessage(2, update)
    assert protocol.parse(bytes([0, 0, 1, 0])) == protocol.SyncMessage(0, b"\x00")
    frame = bytes([1, 25, 1, 1, 1, 21]) + b'{"user":{"name":"a"}}'
    message = protocol.parse(frame)
    assert isinstance(message, protocol.AwarenessMessage)
    assert message.entries == ((1, 1, {"user": {"name": "a"}}),)
    assert protocol.parse(b"\x03") == protocol.QueryAwareness()


def test_outgoing_frames_are_lib0_encoded() -> None:
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    assert protocol.sync_step1(doc) == bytes([0, 0, 1, 0])
    assert protocol.sync_step2(b"\x00\x00") == bytes([0, 1, 2, 0, 0])
    assert protocol.update_message(b"ab") == bytes([0, 2, 2]) + b"ab"
    assert protocol.permission_denied("no") == bytes([2, 0, 2]) + b"no"
    assert protocol.ws_frame(b"abc") == bytes([0x82, 3]) + b"abc"
    assert protocol.ws_frame(b"x" * 300)[:4] == bytes([0x82, 126, 1, 44])


@pytest.mark.parametrize(
    ("frame", "why"),
    [
        (b"", "empty frame"),
        (b"\x80", "truncated varint (message type)"),
        (b"\xff" * 12, "varint too long"),
        (b"\x00\x02", "truncated varint (length of sync payload)"),
        (b"\x00\x02\x03ab", "truncated sync payload: 3 bytes announced, 2 present"),
        (b"\x00\x02\x01ab", "1 unexpected bytes after the sync message"),
        (b"\x00\x05\x00", "unknown sync message type 5"),
        (b"\x09", "unknown message type 9"),
        (b"\x03\x00", "unexpected bytes after the query-awareness message"),
        (b"\x01\x04\x01\x01\x01\x05", "truncated awareness state"),
        (b"\x01\x05\x01\x01\x01\x01{", "awareness state is not JSON"),
        (b"\x01\x05\x01\x01\x01\x01\x31", "not a JSON object or null"),
        (b"\x01\x03\x7f\x01\x01", "announces 127 entries in 3 bytes"),
        (b"\x01\x05\x01\x01\x01\x01\xff", "awareness state is not UTF-8"),
    ],
)
def test_malformed_frames_are_refused_by_name(frame: bytes, why: str) -> None:
    with pytest.raises(errors.ProtocolError, match=re.escape(why)) as raised:
        protocol.parse(frame)
    assert raised.value.code == errors.BAD_MESSAGE


def test_a_null_awareness_state_means_gone() -> None:
    update = bytes([1, 7, 3, 4]) + b"null"
    assert protocol.decode_awareness(update) == ((7, 3, None),)


@given(st.binary(max_size=64))
@settings(max_examples=300, deadline=None)
def test_any_bytes_parse_or_raise_a_protocol_error(frame: bytes) -> None:
    reason = None
    try:
        protocol.parse(frame)
    except errors.ProtocolError as exc:
        reason = exc.reason
    if reason is not None:
        assert reason
        assert len(reason.encode()) <= errors.MAX_REASON_BYTES


# Short sync frames whose length byte is the payload's length, one off, or a varint's first byte.
SYNC_FRAMES = st.tuples(
    st.integers(0, 3), st.binary(max_size=140), st.sampled_from([0, 1, -1, 0x80])
).map(lambda t: bytes((0, t[0], max(0, len(t[1]) + t[2]) % 256)) + t[1])


@given(st.one_of(st.binary(max_size=200), SYNC_FRAMES))
@settings(max_examples=500, deadline=None)
def test_parse_and_its_shortcut_read_every_frame_alike(frame: bytes) -> None:
    # parse takes a shortcut for short sync messages: it must answer as read_message does.
    def outcome(read: Any) -> object:
        try:
            return read(frame)
        except errors.ProtocolError as exc:
            return ("refused", exc.reason)

    assert outcome(protocol.parse) == outcome(protocol.read_message)


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_outgoing_websocket_frames_are_those_of_the_websockets_package(length: int) -> None:
    payload = bytes(range(256)) * (length // 256) + bytes(length % 256)
    expected = ws_frames.Frame(ws_frames.Opcode.BINARY, payload).serialize(mask=False)
    assert protocol.ws_frame(payload) == expected


def test_close_reasons_fit_a_close_frame() -> None:
    long = errors.ConnectionRefused(4400, "é" * 200)
    assert len(long.reason.encode()) <= errors.MAX_REASON_BYTES
    assert long.reason.endswith("...")


def test_the_flood_limit_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate_per_s=10, burst=5, now=0.0)
    assert all(bucket.take(0.0) for _ in range(5))
    assert not bucket.take(0.0)
    assert bucket.take(0.1)  # one token back after 1/10 s
    assert not bucket.take(0.1)
    assert all(bucket.take(10.0) for _ in range(5))  # never more than the burst


@pytest.mark.parametrize(
    "name", ["notes", "json:notebook:6f1c-aa", "team/plan.md", "a", "x" * 200, "u@host"]
)
def test_room_names_accepted(name: str) -> None:
    assert persistence.check_room_name(name) == name


@pytest.mark.parametrize("name", ["", "-x", "a b", "a!b", "a=b", "x" * 201, "ü", "a?b"])
def test_room_names_refused(name: str) -> None:
    with pytest.raises(errors.InvalidRoomName, match="invalid room name"):
        persistence.check_room_name(name)


def grants(*raw: str, owner: str = "alice") -> scopes.Grants:
    return scopes.Grants.of(scopes.expand(raw, owner=scopes.Owner.for_user(owner)))


ROOM = access.RoomInfo(name="plan", exists=True, owner="bob")


@pytest.mark.parametrize(
    ("raw", "owner", "level"),
    [
        (("write:collab",), "bob", "write"),
        (("write:collab!user",), "alice", "write"),  # the user role: one's own rooms
        (("write:collab!user",), "bob", "not_found"),
        (("read:collab!room=plan",), "bob", "read"),
        (("read:collab!room=other",), "bob", "not_found"),
        (("read:collab!room=plan", "write:collab!user=bob"), "bob", "write"),
        (("write:collab!group=team",), "bob", "write"),
        (("write:collab!group=other",), "bob", "not_found"),
        (("read:users",), "bob", "forbidden"),
        (("write:collab!room=plan",), None, "write"),
        (("write:collab!user=bob",), None, "not_found"),  # a service's room has no user
    ],
)
def test_the_room_access_decision(raw: tuple[str, ...], owner: str | None, level: str) -> None:
    membership = {"bob": {"team"}}
    assert collab_access.decide(grants(*raw), ROOM, owner, membership) == level


@pytest.mark.parametrize(
    ("raw", "project", "level"),
    [
        # a project's room follows the project: its writers edit, its readers watch …
        (("write:collab!user",), "write", "write"),
        (("write:collab!user",), "read", "read"),
        (("read:collab!user",), "write", "read"),  # … as far as the token's scope goes
        # … whoever opened it (its owner, bob) counts for nothing: a member removed loses it
        (("write:collab!user=bob",), "not_found", "not_found"),
        (("write:collab!group=team",), "not_found", "not_found"),
        (("write:collab!user",), "not_found", "not_found"),
        (("read:users",), "write", "forbidden"),  # no collab scope at all
        # scopes that name the room, or every room (the hub's admins), still reach it
        (("read:collab!room=plan",), "not_found", "read"),
        (("write:collab",), "not_found", "write"),
    ],
)
def test_a_projects_room_follows_the_project(
    raw: tuple[str, ...], project: collab_access.Level, level: str
) -> None:
    membership = {"bob": {"team"}}
    assert collab_access.decide(grants(*raw), ROOM, "bob", membership, project) == level


def test_room_filters_parse_and_need_a_value() -> None:
    assert str(scopes.parse_scope("read:collab!room=json:notebook:1")) == (
        "read:collab!room=json:notebook:1"
    )
    with pytest.raises(scopes.ScopeError, match="!room needs a value"):
        scopes.parse_scope("read:collab!room", unvalued=True)
    with pytest.raises(scopes.ScopeError, match="a room filter is"):
        scopes.parse_scope("read:collab!room=a b")
    assert "read:collab" in scopes.BUILTIN.implied("write:collab")


def test_squash_is_compact_when_nothing_is_pending() -> None:
    src: pycrdt.Doc[Any] = pycrdt.Doc()
    src["t"] = text = pycrdt.Text()
    updates: list[bytes] = []
    src.observe(lambda event: updates.append(event.update))
    for i in range(50):
        text += str(i % 10)
    del text[0:10]
    squashed = persistence.squash(updates)
    assert len(squashed) < len(pycrdt.merge_updates(*updates))
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    doc.apply_update(squashed)
    assert str(doc.get("t", type=pycrdt.Text)) == str(text)


def test_squash_keeps_updates_still_waiting_for_a_dependency() -> None:
    # pycrdt-store's squash lost such updates: a document drops what it cannot integrate yet.
    src: pycrdt.Doc[Any] = pycrdt.Doc()
    src["t"] = text = pycrdt.Text()
    updates: list[bytes] = []
    src.observe(lambda event: updates.append(event.update))
    text += "ab"
    text += "cd"
    squashed = persistence.squash([updates[1]])  # "cd" without the "ab" it follows
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    doc.apply_update(squashed)
    doc.apply_update(updates[0])
    assert str(doc.get("t", type=pycrdt.Text)) == "abcd"


def text_of(*updates: bytes) -> str:
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    for update in updates:
        doc.apply_update(update)
    return str(doc.get("t", type=pycrdt.Text))


@given(
    ops=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 40), st.text("xyz", max_size=2)),
        min_size=1,
        max_size=80,
    ),
    order=st.randoms(use_true_random=False),
    held_back=st.integers(0, 200),
)
@settings(max_examples=80, deadline=None)
def test_squash_loses_nothing_whatever_the_order_and_gaps(
    ops: list[tuple[int, int, str]], order: Any, held_back: int
) -> None:
    """Three clients insert and delete, building on each other; their updates are squashed in
    any order, one perhaps held back (so that others wait for it). The squash, and the merge
    it may keep, hold all the rest: with the held-back update they make the whole document.
    Without it, the squash reads as squashing the updates all at once did (squash's first
    version), though it merges them a few at a time and builds its document one by one."""
    docs: list[pycrdt.Doc[Any]] = [pycrdt.Doc(client_id=i + 1) for i in range(3)]
    updates: list[bytes] = []
    for doc in docs:
        doc.observe(lambda event: updates.append(event.update))
    for who, where, text in ops:
        t = docs[who].get("t", type=pycrdt.Text)
        if text:
            t.insert(min(where, len(t)), text)
        elif len(t):
            del t[min(where, len(t) - 1)]
        other = docs[(who + 1) % 3]
        other.apply_update(docs[who].get_update(other.get_state()))
    whole = text_of(*updates)
    order.shuffle(updates)
    rest = list(updates)
    late = [rest.pop(held_back)] if held_back < len(rest) else []
    squashed = persistence.squash(rest)
    merged = persistence.merge(rest, fan_in=4)  # several rounds of merging
    assert text_of(squashed, *late) == whole
    assert text_of(merged, *late) == whole
    # and it reads as squashing at once read (pycrdt.merge_updates of all, applied at once)
    at_once = pycrdt.merge_updates(*rest)
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    doc.apply_update(at_once)
    state = doc.get_state()
    if pycrdt.get_update(at_once, state) == doc.get_update(state):
        at_once = doc.get_update()
    assert text_of(squashed) == text_of(at_once)
