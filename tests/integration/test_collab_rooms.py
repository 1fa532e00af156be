"""Collaboration rooms end to end: the real hub app and PostgreSQL, the Python client."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path
from typing import Any

import pycrdt
import pytest

from collab import client, errors, persistence, protocol
from events import models, store
from events.catalog import collab as collab_events
from tests import ports
from tests.helpers import hub_process_env, wait_for
from tests.integration.collab_fixtures import COLLAB_CONFIG, CollabHub

pytestmark = pytest.mark.integration


def text_of(doc: pycrdt.Doc[Any], name: str = "t") -> str:
    return str(doc.get(name, type=pycrdt.Text))


async def stored_updates(hub: CollabHub, room: str) -> list[Any]:
    async with hub.rooms.store.pool.acquire() as conn:
        return await conn.fetch(
            "SELECT seq, data, author FROM collab_updates WHERE room = $1 ORDER BY seq", room
        )


async def room_events(event_store: store.EventStore, room: str) -> list[str]:
    return [e.type for e in await event_store.read_stream(collab_events.stream_id(room))]


async def test_clients_converge_and_a_late_joiner_gets_the_whole_document(
    collab_hub: CollabHub,
) -> None:
    alice = await collab_hub.token("alice")
    async with (
        client.connect(collab_hub.url, "notes", token=alice) as a,
        client.connect(collab_hub.url, "notes", token=alice, in_query=True) as b,
    ):
        await asyncio.wait_for(asyncio.gather(a.synced.wait(), b.synced.wait()), 10)
        ta = a.doc.get("t", type=pycrdt.Text)
        tb = b.doc.get("t", type=pycrdt.Text)
        ta += "hello "
        await wait_for(lambda: text_of(b.doc) == "hello ")
        tb += "world"
        await wait_for(lambda: text_of(a.doc) == "hello world")
        async with client.connect(collab_hub.url, "notes", token=alice) as late:
            await asyncio.wait_for(late.synced.wait(), 10)
            assert text_of(late.doc) == "hello world"


async def test_every_update_is_stored_with_its_author_before_anyone_receives_it(
    collab_hub: CollabHub,
) -> None:
    alice = await collab_hub.token("alice")
    async with (
        client.connect(collab_hub.url, "log", token=alice) as writer,
        client.connect(collab_hub.url, "log", token=alice) as reader,
    ):
        await asyncio.wait_for(asyncio.gather(writer.synced.wait(), reader.synced.wait()), 10)
        text = writer.doc.get("t", type=pycrdt.Text)
        for i in range(5):
            text += str(i)
            await wait_for(lambda i=i: text_of(reader.doc).endswith(str(i)))
            assert len(await stored_updates(collab_hub, "log")) == i + 1
        rows = await stored_updates(collab_hub, "log")
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert {r["author"] for r in rows} == {"user:alice"}
    # Rebuilt from the table alone, the document is what the clients saw.
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    for row in rows:
        doc.apply_update(row["data"])
    assert text_of(doc) == "01234"


async def test_a_client_that_holds_the_whole_document_writes_nothing_by_joining(
    collab_hub: CollabHub,
) -> None:
    # A client that reconnects holds the room's document; its answer to the room's sync step 1
    # then carries every deletion the document has: nothing new, so nothing stored or sent.
    alice = await collab_hub.token("alice")
    async with client.connect(collab_hub.url, "held", token=alice) as writer:
        await asyncio.wait_for(writer.synced.wait(), 10)
        text = writer.doc.get("t", type=pycrdt.Text)
        text += "hello world"
        del text[0:6]

        async def stored(count: int) -> bool:
            return len(await stored_updates(collab_hub, "held")) == count

        await wait_for(lambda: stored(2))
        held: pycrdt.Doc[Any] = pycrdt.Doc()
        held.apply_update(writer.doc.get_update())
        async with client.connect(collab_hub.url, "held", token=alice, doc=held) as late:
            await asyncio.wait_for(late.synced.wait(), 10)
            # a marker after the join: once it is stored, the join's answer was handled
            late.doc.get("t", type=pycrdt.Text).insert(0, "> ")
            await wait_for(lambda: text_of(writer.doc) == "> world")
        rows = await stored_updates(collab_hub, "held")
    assert len(rows) == 3, [bytes(r["data"]) for r in rows]  # the two edits and the marker


async def test_the_broadcast_waits_for_the_append(collab_hub: CollabHub) -> None:
    """Appends are held back (a lock on the room's row); nobody receives the update meanwhile."""
    alice = await collab_hub.token("alice")
    async with (
        client.connect(collab_hub.url, "held", token=alice) as writer,
        client.connect(collab_hub.url, "held", token=alice) as reader,
    ):
        await asyncio.wait_for(asyncio.gather(writer.synced.wait(), reader.synced.wait()), 10)
        pool = collab_hub.rooms.store.pool
        async with pool.acquire() as blocker, blocker.transaction():
            await blocker.execute("SELECT 1 FROM collab_rooms WHERE room = 'held' FOR UPDATE")
            writer.doc.get("t", type=pycrdt.Text).insert(0, "x")
            await writer.flushed()

            async def append_waits() -> bool:
                # Asked on a connection of its own: inside the blocker's transaction,
                # pg_stat_activity is read once and kept until the transaction ends (that is
                # why this condition, asked on the blocker, was once met only when the append
                # was already waiting at the first look)
                return bool(
                    await pool.fetchval(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                        " AND query LIKE '%INSERT INTO collab_updates%'"
                    )
                )

            await wait_for(append_waits)  # the room's append waits for the lock
            # A reply to the reader comes after anything already sent to it: an update
            # broadcast before its append would be there first.
            answered = reader.received
            await reader.send_raw(bytes((protocol.QUERY_AWARENESS,)))
            await wait_for(lambda: reader.received > answered)
            assert text_of(reader.doc) == ""
            assert await stored_updates(collab_hub, "held") == []
        await wait_for(lambda: text_of(reader.doc) == "x")
        assert len(await stored_updates(collab_hub, "held")) == 1


async def test_simultaneous_first_joins_of_a_new_room_are_all_served(
    collab_hub: CollabHub,
) -> None:
    alice = await collab_hub.token("alice")

    async def join(i: int) -> str:
        async with client.connect(collab_hub.url, "crowd", token=alice) as joined:
            await asyncio.wait_for(joined.synced.wait(), 10)
            joined.doc.get("m", type=pycrdt.Map)[f"k{i}"] = i
            await wait_for(lambda: len(joined.doc.get("m", type=pycrdt.Map)) == 8)
            return "served"

    assert await asyncio.gather(*(join(i) for i in range(8))) == ["served"] * 8
    assert (await room_events(collab_hub.api.store, "crowd")).count("collab.room_created") == 1


async def test_awareness_echo_snapshot_on_join_and_removal_at_once_on_abrupt_drop(
    collab_hub: CollabHub,
) -> None:
    alice = await collab_hub.token("alice")
    async with client.connect(collab_hub.url, "aw", token=alice) as a:
        await asyncio.wait_for(a.synced.wait(), 10)
        a.set_user({"user": {"name": "a"}})
        received = a.received
        await wait_for(lambda: a.received > received)  # the server echoes it to the sender
        async with client.connect(collab_hub.url, "aw", token=alice) as b:
            b.set_user({"user": {"name": "b"}})
            # The joiner gets the states already present at once (not at the next renewal).
            await wait_for(lambda: a.awareness.client_id in b.awareness.states)
            await wait_for(lambda: b.awareness.client_id in a.awareness.states)
            # Query-awareness: the server answers with every state it holds.
            before = b.received
            await b.send_raw(bytes((protocol.QUERY_AWARENESS,)))
            await wait_for(lambda: b.received > before)
            assert collab_hub.rooms.limits.awareness_timeout_s >= 30
            b.ws.transport.abort()  # no goodbye: the server must notice and tell the others
            # Well within the outdated timeout (30 s): the server's notice, not the timeout.
            await wait_for(lambda: b.awareness.client_id not in a.awareness.states, timeout_s=10)


async def test_server_side_changes_are_stored_and_broadcast(collab_hub: CollabHub) -> None:
    alice = await collab_hub.token("alice")
    async with client.connect(collab_hub.url, "kernel", token=alice) as a:
        await asyncio.wait_for(a.synced.wait(), 10)
        room = collab_hub.rooms.get("kernel")
        assert room is not None
        seen: list[int] = []
        collab_hub.rooms.participants_hooks.append(lambda r: seen.append(len(r.participants)))
        with room.transaction(author="system:kernel") as doc:
            doc.get("out", type=pycrdt.Text).insert(0, "42\n")
        await room.flushed()
        await wait_for(lambda: text_of(a.doc, "out") == "42\n")
        rows = await stored_updates(collab_hub, "kernel")
        assert [r["author"] for r in rows] == ["system:kernel"]
        async with client.connect(collab_hub.url, "kernel", token=alice) as b:
            await asyncio.wait_for(b.synced.wait(), 10)
        await wait_for(lambda: seen[-1:] == [1])
        assert seen[:1] == [2]


async def test_a_room_reloads_from_its_snapshot_and_later_updates(collab_hub: CollabHub) -> None:
    alice = await collab_hub.token("alice")
    async with client.connect(collab_hub.url, "reload", token=alice) as a:
        await asyncio.wait_for(a.synced.wait(), 10)
        a.doc.get("t", type=pycrdt.Text).insert(0, "before ")
        await a.flushed()
        await wait_for(lambda: _len_rows(collab_hub, "reload", 1), timeout_s=5)
    await collab_hub.rooms.close("reload")  # unload: compacts into a snapshot
    async with collab_hub.rooms.store.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM collab_snapshots WHERE room='reload'") == 1
        assert await conn.fetchval("SELECT count(*) FROM collab_updates WHERE room='reload'") == 0
    async with client.connect(collab_hub.url, "reload", token=alice) as b:
        await asyncio.wait_for(b.synced.wait(), 10)
        assert text_of(b.doc) == "before "
        b.doc.get("t", type=pycrdt.Text).insert(7, "after")
        await b.flushed()
        await wait_for(lambda: _len_rows(collab_hub, "reload", 1))
    await collab_hub.rooms.close("reload")
    reopened = await collab_hub.rooms.open("reload")
    assert text_of(reopened.doc) == "before after"
    store_ = collab_hub.api.store
    await wait_for(lambda: _has_event(store_, "reload", "collab.participant_left", 2), timeout_s=3)
    types = await room_events(store_, "reload")
    assert types[0] == "collab.room_created"
    for expected in (
        "collab.room_opened",
        "collab.participant_joined",
        "collab.participant_left",
        "collab.room_compacted",
        "collab.room_closed",
    ):
        assert expected in types
    # Keystrokes are not events: only lifecycle types are in the room's stream.
    assert set(types) <= {
        "collab.room_created",
        "collab.room_opened",
        "collab.room_closed",
        "collab.room_compacted",
        "collab.participant_joined",
        "collab.participant_left",
    }


async def _has_event(event_store: store.EventStore, room: str, kind: str, count: int) -> bool:
    return (await room_events(event_store, room)).count(kind) >= count


async def _len_rows(hub: CollabHub, room: str, at_least: int) -> bool:
    return len(await stored_updates(hub, room)) >= at_least


async def test_compaction_under_concurrent_edits_loses_nothing(collab_hub: CollabHub) -> None:
    alice = await collab_hub.token("alice")
    async with (
        client.connect(collab_hub.url, "busy", token=alice) as a,
        client.connect(collab_hub.url, "busy", token=alice) as b,
    ):
        await asyncio.wait_for(asyncio.gather(a.synced.wait(), b.synced.wait()), 10)
        arr_a = a.doc.get("items", type=pycrdt.Array)
        arr_b = b.doc.get("items", type=pycrdt.Array)
        stop = asyncio.Event()
        compactions: list[Any] = []

        async def edit(arr: pycrdt.Array[Any], who: str) -> None:
            for i in range(150):
                arr.append(f"{who}{i}")
                if i % 3 == 0:
                    await asyncio.sleep(0.005)  # pacing: edits interleave with compactions

        async def compact() -> None:
            while not stop.is_set():
                done = await collab_hub.rooms.store.compact("busy")
                if done is not None:
                    compactions.append(done)
                await asyncio.sleep(0.005)  # pacing: compact again and again until stopped

        compactor = asyncio.create_task(compact())
        await asyncio.gather(edit(arr_a, "a"), edit(arr_b, "b"))
        await a.flushed()
        await b.flushed()
        await wait_for(lambda: len(arr_a) == 300 and len(arr_b) == 300, timeout_s=20)
        room = collab_hub.rooms.get("busy")
        assert room is not None
        await room.flushed()
        stop.set()
        await compactor
    assert len(compactions) >= 2, "the edits should have raced several compactions"
    loaded = await collab_hub.rooms.store.load("busy")
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    doc.apply_update(loaded.update)
    items = list(doc.get("items", type=pycrdt.Array))
    assert sorted(items) == sorted([f"a{i}" for i in range(150)] + [f"b{i}" for i in range(150)])


async def test_two_rooms_sets_on_one_database_converge_through_postgresql(
    collab_hub: CollabHub, event_store: store.EventStore, db_url: str
) -> None:
    """A second, independent rooms set and app (no shared memory) serves the same room."""
    from tests.integration.collab_fixtures import serving

    alice = await collab_hub.token("alice")
    async with serving(event_store, db_url) as other:
        assert other.rooms is not collab_hub.rooms
        async with (
            client.connect(collab_hub.url, "split", token=alice) as a,
            client.connect(other.url, "split", token=alice) as b,
        ):
            await asyncio.wait_for(asyncio.gather(a.synced.wait(), b.synced.wait()), 10)
            a.doc.get("t", type=pycrdt.Text).insert(0, "from one ")
            await wait_for(lambda: text_of(b.doc) == "from one ")
            tb = b.doc.get("t", type=pycrdt.Text)
            tb += "and the other"
            await wait_for(lambda: text_of(a.doc) == "from one and the other")


@pytest.mark.parametrize(
    ("frame", "code", "why"),
    [
        (b"\x00", errors.BAD_MESSAGE, "truncated varint"),
        (b"\x00\x02\x85", errors.BAD_MESSAGE, "truncated varint"),
        (b"\x00\x02\x05ab", errors.BAD_MESSAGE, "5 bytes announced"),
        (b"\x00\x02\x04garb", errors.BAD_MESSAGE, "update does not apply"),
        (b"\x07\x00", errors.BAD_MESSAGE, "unknown message type 7"),
        (b"\x00\x09\x00", errors.BAD_MESSAGE, "unknown sync message type 9"),
        (b"\x01\x03\x01\x01\x01", errors.BAD_MESSAGE, "truncated"),
        (b"\x00\x00\x03\xff\xff\xff", errors.BAD_MESSAGE, "state vector"),
        (b"", errors.BAD_MESSAGE, "empty frame"),
    ],
)
async def test_bad_frames_close_only_the_sender_and_store_nothing(
    collab_hub: CollabHub, frame: bytes, code: int, why: str
) -> None:
    alice = await collab_hub.token("alice")
    async with (
        client.connect(collab_hub.url, "bad", token=alice) as good,
        client.connect(collab_hub.url, "bad", token=alice) as bad,
    ):
        await asyncio.wait_for(asyncio.gather(good.synced.wait(), bad.synced.wait()), 10)
        good.doc.get("t", type=pycrdt.Text).insert(0, "ok")
        await wait_for(lambda: text_of(bad.doc) == "ok")
        before = await stored_updates(collab_hub, "bad")
        await bad.send_raw(frame)
        await asyncio.wait_for(bad.wait_closed(), 10)
        assert bad.close_code == code
        assert why in (bad.close_reason or "")
        # The room and the other client go on; nothing of the bad frame was stored.
        assert await stored_updates(collab_hub, "bad") == before
        good.doc.get("t", type=pycrdt.Text).insert(2, "!")
        await good.flushed()
        await wait_for(lambda: _len_rows(collab_hub, "bad", len(before) + 1))
        async with client.connect(collab_hub.url, "bad", token=alice) as again:
            await asyncio.wait_for(again.synced.wait(), 10)
            assert text_of(again.doc) == "ok!"


async def test_text_frames_oversized_updates_and_floods_close_the_sender(
    event_store: store.EventStore, db_url: str
) -> None:
    from collab.limits import Limits
    from tests.integration.collab_fixtures import serving

    limits = Limits(max_message_bytes=4096, rate_per_s=20, rate_burst=30, room_grace_s=3600)
    async with serving(event_store, db_url, limits) as hub:
        alice = await hub.token("alice")
        async with client.connect(hub.url, "limits", token=alice) as good:
            await asyncio.wait_for(good.synced.wait(), 10)

            async with client.connect(hub.url, "limits", token=alice) as big:
                await asyncio.wait_for(big.synced.wait(), 10)
                big.doc.get("t", type=pycrdt.Text).insert(0, "x" * 5000)
                await asyncio.wait_for(big.wait_closed(), 10)
                assert big.close_code == errors.TOO_LARGE
                assert "over the limit of 4096" in (big.close_reason or "")

            async with client.connect(hub.url, "limits", token=alice) as text:
                await text.ws.send("hello")
                await asyncio.wait_for(text.wait_closed(), 10)
                assert text.close_code == errors.BAD_MESSAGE
                assert "text frames" in (text.close_reason or "")

            async with client.connect(hub.url, "limits", token=alice) as flood:
                await asyncio.wait_for(flood.synced.wait(), 10)
                query = bytes((protocol.QUERY_AWARENESS,))
                for _ in range(100):
                    if flood.close_code is not None:
                        break
                    await flood.send_raw(query)
                await asyncio.wait_for(flood.wait_closed(), 10)
                assert flood.close_code == errors.FLOOD
                assert "rate limit" in (flood.close_reason or "")

            assert await stored_updates(hub, "limits") == []
            good.doc.get("t", type=pycrdt.Text).insert(0, "still here")
            await good.flushed()
            await wait_for(lambda: _len_rows(hub, "limits", 1))


async def test_credentials_and_scopes_decide_who_joins(collab_hub: CollabHub) -> None:
    owner = await collab_hub.token("owner")
    async with client.connect(collab_hub.url, "private", token=owner) as mine:
        await asyncio.wait_for(mine.synced.wait(), 10)

    async def refused(token: str | None, room: str) -> tuple[int | None, str, list[str]]:
        async with client.connect(collab_hub.url, room, token=token) as joined:
            await asyncio.wait_for(joined.wait_closed(), 10)
            await asyncio.sleep(0)  # a yield: the reader task takes in what came before
            return joined.close_code, joined.close_reason or "", joined.denied

    code, reason, denied = await refused(None, "private")
    assert (code, reason) == (errors.UNAUTHORIZED, "Missing or invalid credentials.")
    assert denied == [reason]
    code, _, _ = await refused("not-a-token", "private")
    assert code == errors.UNAUTHORIZED
    # Another user holds write:collab only on their own rooms: "not found", as for no room.
    stranger = await collab_hub.token("stranger")
    code, reason, _ = await refused(stranger, "private")
    assert (code, reason) == (errors.NOT_FOUND, "No access to resources or resources not found")
    # A token without any collab scope: forbidden.
    narrow = await collab_hub.token("stranger", scopes=["read:users:name!user=stranger"])
    code, reason, _ = await refused(narrow, "private")
    assert code == errors.FORBIDDEN
    assert "read:collab" in reason
    # Invalid room names are refused before anything else.
    code, reason, _ = await refused(owner, "-bad!name")
    assert code == errors.BAD_MESSAGE
    assert "invalid room name" in reason


async def test_a_group_filter_reaches_the_rooms_of_the_groups_members(
    collab_hub: CollabHub,
) -> None:
    api = collab_hub.api
    owner = await collab_hub.token("lead")
    assert (await api.call("POST", "/groups/team"))[0] == 201
    assert (await api.call("POST", "/groups/team/users", json={"users": ["lead"]}))[0] == 200
    mate = await collab_hub.token("mate")
    async with client.connect(collab_hub.url, "team-doc", token=owner) as lead:
        await asyncio.wait_for(lead.synced.wait(), 10)
        lead.doc.get("t", type=pycrdt.Text).insert(0, "plan")
        await lead.flushed()
        async with client.connect(collab_hub.url, "team-doc", token=mate) as joined:
            await asyncio.wait_for(joined.synced.wait(), 10)
            await wait_for(lambda: text_of(joined.doc) == "plan")


async def test_a_read_only_participant_is_refused_writes_and_still_receives(
    collab_hub: CollabHub,
) -> None:
    editor = await collab_hub.token("editor")
    # The reader's role reads room "shared"; as a user, it could also write rooms of its own.
    reader = await collab_hub.token("reader", scopes=["read:collab!room=shared"])
    async with client.connect(collab_hub.url, "shared", token=editor) as ed:
        await asyncio.wait_for(ed.synced.wait(), 10)
        async with client.connect(collab_hub.url, "shared", token=reader) as ro:
            await asyncio.wait_for(ro.synced.wait(), 10)
            ro.doc.get("t", type=pycrdt.Text).insert(0, "sneaky ")
            await ro.flushed()
            await wait_for(lambda: ro.denied != [])
            assert "read-only" in ro.denied[0]
            ed.doc.get("t", type=pycrdt.Text).insert(0, "real")
            await wait_for(lambda: "real" in text_of(ro.doc))
            assert ro.close_code is None  # refused, not disconnected
            assert text_of(ed.doc) == "real"
        rows = await stored_updates(collab_hub, "shared")
        assert {r["author"] for r in rows} == {"user:editor"}
    # Read access cannot create a room: a token reading only its owner's rooms, read-only.
    own_ro = await collab_hub.token("reader", scopes=["read:collab!user=reader"])
    async with client.connect(collab_hub.url, "reader-new", token=own_ro) as ro:
        await asyncio.wait_for(ro.wait_closed(), 10)
        assert ro.close_code == errors.NOT_FOUND
        assert "read-only access cannot create it" in (ro.close_reason or "")


async def test_two_hub_processes_serving_one_room_converge(
    collab_hub: CollabHub, db_url: str, tmp_path: Path
) -> None:
    """A second chronohub, a separate OS process on the same database, serves the same room."""
    port = ports.free_port()
    env = hub_process_env(db_url, tmp_path / "none.toml", tmp_path / "state") | {
        "CHRONOHUB_ADMIN_USERS": json.dumps(COLLAB_CONFIG["admin_users"]),
        "CHRONOHUB_SERVICES": json.dumps(COLLAB_CONFIG["services"]),
        "CHRONOHUB_ROLES": json.dumps(COLLAB_CONFIG["roles"]),
    }
    with open(tmp_path / "hub.log", "wb") as hub_log:  # its log lines, apart from the banner
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hub.cli", "serve", "--ip", "127.0.0.1", "--port", str(port),
            "--hub-port", "0",
            env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=hub_log,
        )  # fmt: skip
    try:
        assert process.stdout is not None
        banner = await asyncio.wait_for(process.stdout.readline(), 60)
        assert b"chronohub serving" in banner, (banner, (tmp_path / "hub.log").read_text())
        alice = await collab_hub.token("alice")
        other_url = f"ws://127.0.0.1:{port}"
        async with (
            client.connect(collab_hub.url, "procs", token=alice) as here,
            client.connect(other_url, "procs", token=alice) as there,
        ):
            await asyncio.wait_for(asyncio.gather(here.synced.wait(), there.synced.wait()), 10)
            here.doc.get("t", type=pycrdt.Text).insert(0, "one")
            await wait_for(lambda: text_of(there.doc) == "one")
            there_text = there.doc.get("t", type=pycrdt.Text)
            there_text += " two"
            await wait_for(lambda: text_of(here.doc) == "one two")
            for i in range(20):  # interleaved edits from both sides converge
                here.doc.get("t", type=pycrdt.Text).insert(0, f"h{i}")
                there_text += f"t{i}"
            await wait_for(lambda: text_of(here.doc) == text_of(there.doc), timeout_s=10)
            assert len(text_of(here.doc)) == len("one two") + 2 * sum(
                len(f"h{i}") for i in range(20)
            )
        authors = {r["author"] for r in await stored_updates(collab_hub, "procs")}
        assert authors == {"user:alice"}
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)


async def test_an_append_says_whether_another_process_holds_the_room(
    event_store: store.EventStore,
) -> None:
    one = persistence.RoomStore(event_store, durable_updates=False, process="one")
    two = persistence.RoomStore(event_store, process="two")
    await one.create("presence", None, models.Metadata())
    await one.load("presence")
    alone = await one.append("presence", [text_update("a")], ["user:a"])
    assert alone == persistence.Appended([1], shared=False)  # nobody to wake: no NOTIFY
    await two.load("presence")
    both = await one.append("presence", [text_update("b", 2), text_update("c", 3)], ["x", "y"])
    assert both == persistence.Appended([2, 3], shared=True)
    await two.release("presence")
    assert (await one.append("presence", [text_update("d", 4)], ["x"])).shared is False
    three = [text_update(c, 5 + i) for i, c in enumerate("efg")]
    many = await one.append("presence", three, ["x"] * 3)
    assert many == persistence.Appended([5, 6, 7], shared=False)
    async with event_store.pool.acquire() as conn:
        seqs = await conn.fetch("SELECT seq, author FROM collab_updates WHERE room = 'presence'")
    assert sorted(r["seq"] for r in seqs) == list(range(1, 8))
    with pytest.raises(errors.CollabError, match="room 'nowhere' does not exist"):
        await one.append("nowhere", [text_update("z", 9)], ["x"])


async def test_a_rooms_authors_survive_its_compaction(event_store: store.EventStore) -> None:
    # a commit from a session names everyone who edited its room: compaction keeps them
    rooms = persistence.RoomStore(event_store, process="one")
    await rooms.create("authored", None, models.Metadata())
    await rooms.append(
        "authored", [text_update("a", 1), text_update("b", 2)], ["user:bob", "system:chronohub"]
    )
    await rooms.append("authored", [text_update("c", 3)], ["user:alice"])
    first = ["user:bob", "system:chronohub", "user:alice"]
    assert await rooms.authors("authored") == first
    assert await rooms.compact("authored") is not None
    assert await rooms.authors("authored") == first
    await rooms.append(
        "authored", [text_update("d", 4), text_update("e", 5)], ["user:carol", "user:bob"]
    )
    assert await rooms.authors("authored") == [*first, "user:carol"]
    assert await rooms.compact("authored") is not None
    assert await rooms.authors("authored") == [*first, "user:carol"]
    assert await rooms.authors("no-such-room") == []


def text_update(text: str, client_id: int = 1) -> bytes:
    doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=client_id)
    doc.get("t", type=pycrdt.Text).insert(0, text)
    return doc.get_update()


async def test_stopping_the_hub_closes_connections_with_going_away(
    event_store: store.EventStore, db_url: str
) -> None:
    from tests.integration.collab_fixtures import serving

    async with serving(event_store, db_url) as hub:
        alice = await hub.token("alice")
        async with client.connect(hub.url, "bye", token=alice) as joined:
            await asyncio.wait_for(joined.synced.wait(), 10)
            joined.doc.get("t", type=pycrdt.Text).insert(0, "kept")
            await joined.flushed()
            await wait_for(lambda: _len_rows(hub, "bye", 1))
            await hub.api.client.close()  # the app shuts down while the client is connected
            # Closed by the app, well before aiohttp's shutdown timeout (60 s) would have.
            await asyncio.wait_for(joined.wait_closed(), 10)
            assert joined.close_code == errors.GOING_AWAY
    types = await room_events(event_store, "bye")
    assert types[-1] == "collab.room_closed"


async def test_a_database_that_does_not_answer_closes_with_a_retryable_code(
    collab_hub: CollabHub,
) -> None:
    alice = await collab_hub.token("alice")
    collab_hub.rooms.store.pool.terminate()
    # In the query: a header would meet the hub's API middleware first (an HTTP 500).
    async with client.connect(collab_hub.url, "down", token=alice, in_query=True) as joined:
        await asyncio.wait_for(joined.wait_closed(), 10)
        assert joined.close_code == errors.UNAVAILABLE  # not 44xx: y-websocket retries
        assert "database" in (joined.close_reason or "")


async def test_a_connection_that_stops_reading_is_closed_and_the_room_goes_on(
    event_store: store.EventStore, db_url: str
) -> None:
    from websockets.asyncio.client import connect as ws_connect

    from collab.limits import Limits
    from tests.integration.collab_fixtures import serving

    limits = Limits(
        send_buffer_bytes=32 * 1024, room_grace_s=3600, rate_per_s=10_000, rate_burst=10_000
    )
    async with serving(event_store, db_url, limits) as hub:
        alice = await hub.token("alice")
        headers = {"Authorization": f"token {alice}"}
        # A client that never reads: once its socket buffers are full, frames pile up here.
        small = socket.socket()
        small.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        small.connect(("127.0.0.1", int(hub.url.rsplit(":", 1)[1])))
        async with ws_connect(
            f"{hub.url}/collab/slow",
            additional_headers=headers,
            max_queue=1,
            proxy=None,
            sock=small,
        ) as stalled:
            await stalled.recv()  # the server's SyncStep1: it is in the room
            stalled.transport.pause_reading()
            async with client.connect(hub.url, "slow", token=alice) as writer:
                await asyncio.wait_for(writer.synced.wait(), 10)
                room = hub.rooms.get("slow")
                assert room is not None
                text = writer.doc.get("t", type=pycrdt.Text)
                for i in range(500):  # up to 16 MB: more than the socket buffers hold
                    text += f"{i:04d}" * 8000
                    if len(room.connections) == 1:
                        break
                    await asyncio.sleep(0.002)  # pacing: let the server write (and stall)
                await wait_for(lambda: len(room.connections) == 1, timeout_s=20)
                assert [c.participant.name for c in room.connections] == ["alice"]
                # The writer goes on, alone in the room, every update stored.
                await writer.flushed()
                await room.flushed()
                assert len(await stored_updates(hub, "slow")) >= 1
            stalled.transport.abort()  # it would not answer a closing handshake either

        async def slow_one_left() -> bool:
            # Its leave is queued once the hub sees the abort and its handler ends: later
            # than the writer's, which may be recorded first.
            await hub.rooms.recorded()
            left = [
                e.data
                for e in await event_store.read_stream(collab_events.stream_id("slow"))
                if e.type == "collab.participant_left"
            ]
            return any("bytes waiting to be sent" in e.reason for e in left)  # type: ignore[attr-defined]

        await wait_for(slow_one_left, timeout_s=20)


async def test_observers_learn_who_wrote_an_update_here_and_through_another_process(
    collab_hub: CollabHub, event_store: store.EventStore, db_url: str
) -> None:
    """A session's executor identifies who asked from the transaction origin."""
    from collab.access import Participant
    from tests.integration.collab_fixtures import serving

    alice = await collab_hub.token("alice")
    async with serving(event_store, db_url) as other:
        async with client.connect(collab_hub.url, "asks", token=alice) as joined:
            await asyncio.wait_for(joined.synced.wait(), 10)  # alice's room now
            here = await collab_hub.rooms.open("asks")
            there = await other.rooms.open("asks")
            seen_here: list[Any] = []
            seen_there: list[Any] = []
            subscriptions = [  # kept: a dropped subscription stops observing
                here.doc.get("requests", type=pycrdt.Map).observe(
                    lambda e: seen_here.append(e.transaction.origin)
                ),
                there.doc.get("requests", type=pycrdt.Map).observe(
                    lambda e: seen_there.append(e.transaction.origin)
                ),
            ]
            joined.doc.get("requests", type=pycrdt.Map)["r1"] = {"cell_id": "c1"}
            await wait_for(lambda: seen_here and seen_there)
        assert len(subscriptions) == 2
        expected = Participant("user", "alice", can_write=True)
        assert seen_here == [expected]
        assert seen_there == [expected]
