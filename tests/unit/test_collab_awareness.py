"""Awareness between processes without a database: the payloads, the expiry rule, the room."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pycrdt
import pytest

from collab import access, awareness, protocol, room
from collab.limits import Limits
from events import notify


class Sink:
    """Records what a connection was sent, parsed."""

    def __init__(self) -> None:
        self.messages: list[protocol.Message] = []

    def write(self, data: bytes) -> None:
        reader = memoryview(data)
        while reader:  # unmasked server frames: 0x82, a length, the payload
            length, start = reader[1], 2
            if length == 126:
                length, start = int.from_bytes(reader[2:4]), 4
            elif length == 127:
                length, start = int.from_bytes(reader[2:10]), 10
            self.messages.append(protocol.parse(bytes(reader[start : start + length])))
            reader = reader[start + length :]

    def buffered(self) -> int:
        return 0

    def close(self, code: int, reason: str) -> None:
        pass

    def awareness_entries(self) -> list[tuple[int, int, Any]]:
        return [
            entry
            for message in self.messages
            if isinstance(message, protocol.AwarenessMessage)
            for entry in message.entries
        ]


def state_update(client_id: int, clock: int, state: dict[str, Any] | None) -> bytes:
    """One awareness entry, encoded as y-protocols does."""
    text = json.dumps(state)
    data = text.encode()
    return (
        pycrdt.write_var_uint(1)
        + pycrdt.write_var_uint(client_id)
        + pycrdt.write_var_uint(clock)
        + pycrdt.write_var_uint(len(data))
        + data
    )


def test_outdated_drops_states_not_renewed_within_the_timeout() -> None:
    renewed = {1: 100.0, 2: 120.0, 3: 129.9, 4: 70.0}
    assert awareness.outdated(renewed, 130.0, 30.0) == [1, 4]  # 30 s or more: gone
    assert awareness.outdated(renewed, 130.0) == [1, 4]  # y-protocols' 30 s by default
    assert awareness.outdated(renewed, 99.0, 30.0) == []
    assert awareness.outdated({}, 1e9, 30.0) == []
    assert awareness.outdated(renewed, 131.0, 1.0) == [1, 2, 3, 4]


def test_payloads_round_trip_and_are_tagged_apart_from_room_names() -> None:
    update = state_update(7, 3, {"user": {"name": "a"}})
    payload = awareness.encode_update("notes", update)
    assert payload is not None
    assert awareness.is_awareness(payload)
    assert awareness.decode(payload) == awareness.Relayed("notes", update)
    query = awareness.encode_query("notes")
    assert awareness.is_awareness(query)
    assert awareness.decode(query) == awareness.Query("notes")
    assert not awareness.is_awareness("notes")  # a wake-up: room names start with a letter/digit


def test_an_update_over_the_notify_limit_has_no_payload() -> None:
    big = state_update(7, 3, {"user": {"name": "x" * notify.MAX_PAYLOAD_BYTES}})
    assert awareness.encode_update("notes", big) is None


LIST_STATE = base64.b64encode(b"\x01\x01\x01\x03[1]").decode()  # a state that is no object


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "not an object"),
        ('{"awareness": "AA=="}', "room name"),
        ('{"room": 5, "awareness": "AA=="}', "room name"),
        ('{"room": "r"}', "neither"),
        ('{"room": "r", "query": false}', "neither"),
        ('{"room": "r", "awareness": 12}', "neither"),
        ('{"room": "r", "awareness": "AA==", "extra": 1}', "neither"),
        ('{"room": "r", "awareness": "%%% not base64"}', "not base64"),
        ('{"room": "r", "awareness": "AQID"}', "does not decode"),
        (json.dumps({"room": "r", "awareness": LIST_STATE}), "not a JSON object"),
    ],
)
def test_a_bad_payload_is_refused_with_the_reason(payload: str, why: str) -> None:
    with pytest.raises(awareness.BadPayload, match=why):
        awareness.decode(payload)


def test_fit_halves_until_each_payload_fits_and_names_what_cannot() -> None:
    sizes = {1: 10, 2: 10, 3: 10, 4: 200, 5: 10}

    def encode(ids: Any) -> str | None:
        total = sum(sizes[i] for i in ids)
        return ",".join(map(str, ids)) if total <= 30 else None

    payloads, too_large = awareness.fit([1, 2, 3, 4, 5], encode)
    assert too_large == [4]
    assert sorted(int(i) for p in payloads for i in p.split(",")) == [1, 2, 3, 5]
    assert awareness.fit([], encode) == ([], [])
    assert awareness.fit([1, 2], encode) == (["1,2"], [])


def connect(
    shared: room.Room, name: str = "a", can_write: bool = True
) -> tuple[room.Connection, Sink]:
    sink = Sink()
    conn = room.Connection(access.Participant("user", name, can_write), sink, shared.limits)
    shared.join(conn)
    return conn, sink


async def test_local_awareness_is_noted_for_relay_and_remote_awareness_is_not() -> None:
    noted: list[str] = []
    shared = room.Room("r", None, Limits(), awareness_changed=noted.append)
    conn, _ = connect(shared)
    _, watcher = connect(shared, "b")
    shared.receive(conn, protocol.awareness_message(state_update(7, 1, {"n": 1})))
    shared.receive(conn, protocol.awareness_message(state_update(7, 2, {"n": 2})))
    assert noted == ["r"]  # once until taken: the rooms set gathers them
    assert shared.take_awareness_changes() == [7]
    assert shared.take_awareness_changes() == []
    assert shared.local_awareness() == [7]
    # From another process: applied, sent to everyone here, never noted for relay.
    assert shared.apply_remote_awareness(state_update(9, 4, {"n": "remote"}), now=0.0)
    assert shared.awareness.states[9] == {"n": "remote"}
    await asyncio.sleep(0)  # frames are written once per event-loop pass
    assert (9, 4, {"n": "remote"}) in watcher.awareness_entries()
    assert shared.take_awareness_changes() == []
    assert noted == ["r"]
    assert shared.local_awareness() == [7]
    # An older relayed state changes nothing and is not sent.
    before = len(watcher.messages)
    changed = shared.apply_remote_awareness(state_update(9, 3, {"n": "old"}), now=1.0)
    await asyncio.sleep(0)
    assert not changed
    assert len(watcher.messages) == before


async def test_a_leaving_connection_s_removal_is_noted_for_relay() -> None:
    noted: list[str] = []
    shared = room.Room("r", None, Limits(), awareness_changed=noted.append)
    conn, _ = connect(shared)
    shared.receive(conn, protocol.awareness_message(state_update(7, 1, {"n": 1})))
    shared.take_awareness_changes()
    shared.leave(conn)
    assert shared.take_awareness_changes() == [7]
    assert 7 not in shared.awareness.states
    # What is encoded for the relay is a removal: state null at the client's clock.
    assert protocol.decode_awareness(shared.awareness.encode_awareness_update([7])) == (
        (7, 1, None),
    )


async def test_remote_states_not_renewed_expire_and_the_removal_is_broadcast() -> None:
    shared = room.Room("r", None, Limits(), awareness_changed=lambda _name: None)
    conn, sink = connect(shared)
    shared.receive(conn, protocol.awareness_message(state_update(7, 1, {"local": True})))
    shared.apply_remote_awareness(state_update(8, 1, {"n": 8}), now=100.0)
    shared.apply_remote_awareness(state_update(9, 1, {"n": 9}), now=100.0)
    shared.apply_remote_awareness(state_update(9, 2, {"n": 9}), now=120.0)  # renewed
    assert shared.expire_remote_awareness(now=125.0, timeout_s=30.0) == []
    assert shared.expire_remote_awareness(now=130.0, timeout_s=30.0) == [8]
    assert set(shared.awareness.states) == {7, 9}  # local states never expire this way
    await asyncio.sleep(0)
    assert (8, 1, None) in sink.awareness_entries()
    # A removal relayed by the other process ends the clock on it too.
    shared.apply_remote_awareness(state_update(9, 2, None), now=121.0)
    assert set(shared.awareness.states) == {7}
    assert shared.expire_remote_awareness(now=1000.0, timeout_s=30.0) == []
    # An expired client that renews later comes back.
    assert shared.apply_remote_awareness(state_update(8, 2, {"n": 8}), now=200.0)
    assert 8 in shared.awareness.states


async def test_a_joiner_and_a_query_get_remote_states_too() -> None:
    shared = room.Room("r", None, Limits(), awareness_changed=lambda _name: None)
    conn, _ = connect(shared)
    shared.receive(conn, protocol.awareness_message(state_update(7, 1, {"here": True})))
    shared.apply_remote_awareness(state_update(9, 5, {"there": True}), now=0.0)
    joiner, sink = connect(shared, "late")
    await asyncio.sleep(0)
    first = next(m for m in sink.messages if isinstance(m, protocol.AwarenessMessage))
    assert sorted(first.entries) == [(7, 1, {"here": True}), (9, 5, {"there": True})]
    sink.messages.clear()
    shared.receive(joiner, bytes((protocol.QUERY_AWARENESS,)))
    await asyncio.sleep(0)
    assert sorted(sink.awareness_entries()) == [(7, 1, {"here": True}), (9, 5, {"there": True})]


def test_stamp_puts_the_authenticated_name_in_every_state_and_keeps_the_rest() -> None:
    entries = (
        (1, 3, {"user": {"name": "mallory", "color": "#d1495b"}, "cursor": {"anchor": 1}}),
        (2, 1, {"cursor": None}),
        (3, 5, {"user": "not an object"}),
        (4, 2, None),
    )
    assert awareness.stamp(entries, "alice") == (
        (1, 3, {"user": {"name": "alice", "color": "#d1495b"}, "cursor": {"anchor": 1}}),
        (2, 1, {"cursor": None}),  # no user claimed, none added
        (3, 5, {"user": {"name": "alice"}}),
        (4, 2, None),  # a client leaving says nothing to stamp
    )
    # nothing to change: no new update is built
    assert awareness.stamp(((1, 4, {"user": {"name": "alice"}}), (2, 1, None)), "alice") is None


CSS = "red;position:fixed;inset:0;z-index:99;background:url(/user/x/y)"


@pytest.mark.parametrize(
    "colour",
    [
        CSS,
        "red",  # a name is a colour, but words are how CSS gets in: only hex is taken
        "#12345",
        "#1234567",
        "#gggggg",
        "#123456;x:y",
        "#123456\n",
        "var(--jp-collaborator-color1);x:y",
        "var(--anything)",
        "url(/x)",
        12,
        None,
        ["#123456"],
    ],
)
def test_stamp_drops_a_colour_that_is_not_a_plain_colour(colour: object) -> None:
    entries = ((1, 1, {"user": {"name": "alice", "color": colour, "colorLight": colour}}),)
    assert awareness.stamp(entries, "alice") == ((1, 1, {"user": {"name": "alice"}}),)


@pytest.mark.parametrize(
    "colour", ["#abc", "#ABCD", "#2e86ab", "#2E86AB33", "var(--jp-collaborator-color3)"]
)
def test_stamp_keeps_plain_colours(colour: str) -> None:
    entries = ((1, 1, {"user": {"name": "alice", "color": colour, "colorLight": colour}}),)
    assert awareness.stamp(entries, "alice") is None


def test_stamp_sets_every_name_jupyterlab_shows_and_drops_the_avatar() -> None:
    claimed = {
        "username": "bob",
        "name": "Bob",
        "display_name": "Bob Smith",
        "initials": "BS",
        "avatar_url": "https://example.org/bob.png",
        "color": "var(--jp-collaborator-color2)",
    }
    assert awareness.stamp(((5, 2, {"user": claimed}),), "alice-cooper") == (
        (
            5,
            2,
            {
                "user": {
                    "username": "alice-cooper",
                    "name": "alice-cooper",
                    "display_name": "alice-cooper",
                    "initials": "AC",
                    "color": "var(--jp-collaborator-color2)",
                }
            },
        ),
    )
    assert awareness.initials("alice") == "A"
    assert awareness.initials("_") == "_"


async def test_a_watcher_s_css_in_its_colour_reaches_nobody() -> None:
    """A read-only watcher's colour carrying CSS (clients put it in a style attribute) is
    dropped before anyone, the writer included, sees the state."""
    shared = room.Room("r", None, Limits())
    _, writer = connect(shared, "alice")
    watcher, _ = connect(shared, "carol", can_write=False)
    hostile = {"user": {"name": "carol", "color": CSS, "colorLight": CSS}, "cursor": None}
    shared.receive(watcher, protocol.awareness_message(state_update(9, 1, hostile)))
    await asyncio.sleep(0)
    assert shared.awareness.states[9] == {"user": {"name": "carol"}, "cursor": None}
    assert writer.awareness_entries() == [(9, 1, {"user": {"name": "carol"}, "cursor": None})]


def test_an_encoded_awareness_update_decodes_to_its_entries() -> None:
    entries = ((7, 2, {"user": {"name": "zoë"}, "n": [1, 2]}), (8, 9, None))
    assert protocol.decode_awareness(protocol.encode_awareness(entries)) == entries


async def test_a_claimed_name_is_replaced_by_the_connections_own_for_everyone() -> None:
    shared = room.Room("r", None, Limits())
    conn, _ = connect(shared, "alice")
    _, watcher = connect(shared, "bob")
    claimed = {"user": {"name": "bob", "color": "#2e86ab"}}
    shared.receive(conn, protocol.awareness_message(state_update(7, 1, claimed)))
    stamped = {"user": {"name": "alice", "color": "#2e86ab"}}
    assert shared.awareness.states[7] == stamped
    await asyncio.sleep(0)
    assert (7, 1, stamped) in watcher.awareness_entries()
    assert (7, 1, claimed) not in watcher.awareness_entries()


def entries_message(*entries: tuple[int, int, Any]) -> bytes:
    return protocol.awareness_message(protocol.encode_awareness(entries))


async def test_a_connection_cannot_remove_or_take_over_another_s_client_id() -> None:
    """A read-only watcher sends entries for a writer's client id, with a higher clock: a null
    state (which would remove the writer's cursor for everyone) and a state (which would take
    the id over). Both are dropped; its own entry in the same message still counts, and the
    connection stays open."""
    shared = room.Room("r", None, Limits(), awareness_changed=lambda _name: None)
    writer, writer_sink = connect(shared, "alice")
    watcher, watcher_sink = connect(shared, "carol", can_write=False)
    mine = {"user": {"name": "alice"}, "cursor": {"anchor": 3}}
    shared.receive(writer, protocol.awareness_message(state_update(7, 1, mine)))
    shared.take_awareness_changes()
    await asyncio.sleep(0)
    writer_sink.messages.clear()

    shared.receive(watcher, entries_message((7, 9, None), (8, 1, {"user": {"name": "carol"}})))
    shared.receive(watcher, entries_message((7, 10, {"user": {"name": "x"}, "cursor": None})))
    shared.receive(watcher, entries_message((7, 11, None)))  # nothing of its own: nothing sent
    await asyncio.sleep(0)
    assert shared.awareness.states[7] == mine
    assert shared.awareness.meta[7]["clock"] == 1
    assert writer_sink.awareness_entries() == [(8, 1, {"user": {"name": "carol"}})]
    assert shared.take_awareness_changes() == [8]  # the dropped id is not relayed either
    assert shared.local_awareness() == [7, 8]
    assert watcher.controlled == {8}
    assert not watcher.closed

    # The writer goes on with its id; when it leaves, its state goes, for everyone.
    shared.receive(writer, protocol.awareness_message(state_update(7, 2, {"n": 2})))
    assert shared.awareness.states[7] == {"n": 2}
    shared.leave(writer)
    assert 7 not in shared.awareness.states
    await asyncio.sleep(0)
    assert (7, 2, None) in watcher_sink.awareness_entries()


async def test_of_an_answer_with_every_state_only_the_sender_s_own_is_kept() -> None:
    """A client answering a query sends every state it knows (as y-websocket and
    collab.client do): the states of other connections here and of other processes' clients
    are not the sender's, and are dropped; its own goes through."""
    shared = room.Room("r", None, Limits(), awareness_changed=lambda _name: None)
    alice, _ = connect(shared, "alice")
    bob, _ = connect(shared, "bob")
    _, watcher = connect(shared, "carol")
    shared.receive(alice, protocol.awareness_message(state_update(7, 3, {"a": 1})))
    assert shared.apply_remote_awareness(state_update(11, 2, {"far": 1}), now=0.0)
    await asyncio.sleep(0)
    watcher.messages.clear()

    answer = entries_message((7, 3, {"a": 1}), (11, 2, {"far": 1}), (12, 1, {"b": 1}))
    shared.receive(bob, answer)
    # even with newer clocks, and a null for the remote one
    shared.receive(bob, entries_message((7, 4, {"a": "taken"}), (11, 3, None)))
    await asyncio.sleep(0)
    assert watcher.awareness_entries() == [(12, 1, {"b": 1})]
    assert shared.awareness.states[7] == {"a": 1}
    assert shared.awareness.states[11] == {"far": 1}
    assert bob.controlled == {12}


async def test_a_relay_from_another_process_does_not_take_over_an_id_held_here() -> None:
    shared = room.Room("r", None, Limits(), awareness_changed=lambda _name: None)
    alice, _ = connect(shared, "alice")
    _, watcher = connect(shared, "carol")
    shared.receive(alice, protocol.awareness_message(state_update(7, 1, {"a": 1})))
    await asyncio.sleep(0)
    watcher.messages.clear()
    assert not shared.apply_remote_awareness(state_update(7, 5, None), now=0.0)
    relayed = protocol.encode_awareness(((7, 6, {"far": 1}), (9, 1, {"far": 9})))
    assert shared.apply_remote_awareness(relayed, now=0.0)
    await asyncio.sleep(0)
    assert shared.awareness.states[7] == {"a": 1}
    assert shared.awareness.states[9] == {"far": 9}
    assert watcher.awareness_entries() == [(9, 1, {"far": 9})]


async def test_an_id_is_free_again_once_its_holder_left_or_its_remote_state_went() -> None:
    shared = room.Room("r", None, Limits(), awareness_changed=lambda _name: None)
    first, _ = connect(shared, "alice")
    shared.receive(first, protocol.awareness_message(state_update(7, 1, {"v": 1})))
    shared.leave(first)
    again, _ = connect(shared, "alice")  # the same browser tab, reconnected
    shared.receive(again, protocol.awareness_message(state_update(7, 2, {"v": 2})))
    assert shared.awareness.states[7] == {"v": 2}
    shared.apply_remote_awareness(state_update(9, 1, {"far": 1}), now=0.0)
    shared.apply_remote_awareness(state_update(9, 1, None), now=1.0)  # it moved here
    shared.receive(again, protocol.awareness_message(state_update(9, 2, {"moved": 1})))
    assert shared.awareness.states[9] == {"moved": 1}


async def test_a_reconnect_of_the_same_participant_takes_its_id_over_at_once() -> None:
    """A browser tab that reconnected before the server noticed its old socket was gone sends
    its state with the same client id: the same participant's new connection gets the id
    (another participant's would not), and the old socket's leaving no longer removes it."""
    shared = room.Room("r", None, Limits(), awareness_changed=lambda _name: None)
    old, _ = connect(shared, "alice")
    shared.receive(old, protocol.awareness_message(state_update(7, 1, {"v": 1})))
    intruder, _ = connect(shared, "carol")
    shared.receive(intruder, protocol.awareness_message(state_update(7, 2, {"v": "carol"})))
    assert shared.awareness.states[7] == {"v": 1}
    new, _ = connect(shared, "alice")
    shared.receive(new, protocol.awareness_message(state_update(7, 2, {"v": 2})))
    assert shared.awareness.states[7] == {"v": 2}
    assert new.controlled == {7}
    assert old.controlled == set()
    shared.leave(old)
    assert shared.awareness.states[7] == {"v": 2}
