"""Awareness across hub processes: two rooms sets (or a hub OS process) on one PostgreSQL.

Each ``serving`` hub has its own rooms, relay and LISTEN connection, sharing no memory with
the other: what one's clients see of the other's comes through PostgreSQL's NOTIFY.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pycrdt
import pytest

from collab import awareness, client, protocol, relay, rooms
from collab import limits as collab_limits
from events import notify, store
from tests import ports
from tests.helpers import hub_process_env, wait_for
from tests.integration.collab_fixtures import COLLAB_CONFIG, CollabHub, serving
from tests.integration.test_collab_rooms import text_of

pytestmark = pytest.mark.integration


class ChannelWatch:
    """Every notification on the collab channel, with the backend pid that sent it."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str]] = []

    def on_notify(self, _conn: object, pid: int, _channel: str, payload: object) -> None:
        self.seen.append((pid, str(payload)))

    def queries(self) -> list[tuple[int, awareness.Query]]:
        """The queries seen (a process that opened a room, or whose LISTEN reconnected)."""
        return [(pid, m) for pid, m in self.messages() if isinstance(m, awareness.Query)]

    def updates(self) -> list[tuple[int, awareness.Relayed]]:
        """The relayed awareness updates seen, decoded."""
        return [(pid, m) for pid, m in self.messages() if isinstance(m, awareness.Relayed)]

    def messages(self) -> list[tuple[int, object]]:
        """The awareness messages seen (not the rooms' wake-ups), decoded."""
        return [(pid, awareness.decode(p)) for pid, p in self.seen if awareness.is_awareness(p)]


@contextlib.asynccontextmanager
async def watching(db_url: str) -> AsyncIterator[ChannelWatch]:
    watch = ChannelWatch()
    conn = await asyncpg.connect(db_url)
    try:
        await conn.add_listener(relay.CHANNEL, watch.on_notify)
        yield watch
    finally:
        await conn.close()


async def notify_raw(db_url: str, payload: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute("SELECT pg_notify($1, $2)", relay.CHANNEL, payload)
    finally:
        await conn.close()


async def execute_sql(db_url: str, statement: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def listening(*hubs: CollabHub) -> None:
    for hub in hubs:
        assert hub.rooms.listening is not None
        await asyncio.wait_for(hub.rooms.listening.wait(), 10)


async def known_shared(hub: CollabHub, name: str) -> None:
    """Wait until ``hub`` has heard from the other process serving room ``name`` (its query,
    sent when it opened the room): notifications counted after this are the test's own."""
    await wait_for(lambda: (opened := hub.rooms.get(name)) is not None and opened.shared)


def ids_of(relayed: awareness.Relayed) -> list[int]:
    return [entry[0] for entry in protocol.decode_awareness(relayed.update)]


def states_in(relayed: awareness.Relayed) -> dict[int, Any]:
    """The states a relayed update carries, by client id."""
    return {entry[0]: entry[2] for entry in protocol.decode_awareness(relayed.update)}


def relayed_state(watch: ChannelWatch, who: client.RoomClient, state: Any) -> bool:
    """Whether ``watch`` has seen a notification carrying ``state`` for ``who``."""
    return any(states_in(m).get(who.awareness.client_id) == state for _pid, m in watch.updates())


def sees(watcher: client.RoomClient, other: client.RoomClient, state: Any = None) -> bool:
    held = watcher.awareness.states.get(other.awareness.client_id)
    return held is not None if state is None else held == state


async def test_a_state_set_on_one_process_reaches_clients_of_the_other(
    collab_hub: CollabHub, event_store: store.EventStore, db_url: str
) -> None:
    alice = await collab_hub.token("alice")
    async with serving(event_store, db_url) as other:
        await listening(collab_hub, other)
        async with client.connect(collab_hub.url, "aware", token=alice) as a:
            await asyncio.wait_for(a.synced.wait(), 10)
            a.set_user({"user": {"name": "alice"}})
            here = collab_hub.rooms.get("aware")
            assert here is not None
            await wait_for(lambda: a.awareness.client_id in here.awareness.states)
            # The room is not open on the other process yet: opening it there asks this one
            # for its connections' states.
            assert other.rooms.get("aware") is None
            async with client.connect(other.url, "aware", token=alice) as b:
                await wait_for(lambda: sees(b, a, {"user": {"name": "alice"}}), timeout_s=5)
                b.set_user({"user": {"name": "alice"}})
                await wait_for(lambda: sees(a, b, {"user": {"name": "alice"}}), timeout_s=5)
                a.set_user({"user": {"name": "alice", "cursor": 3}})
                await wait_for(lambda: sees(b, a, {"user": {"name": "alice", "cursor": 3}}))
                # A later joiner of the other process has both in its first awareness
                # message, which comes before the answer to its SyncStep1.
                async with client.connect(other.url, "aware", token=alice) as late:
                    await asyncio.wait_for(late.synced.wait(), 10)
                    assert sees(late, a, {"user": {"name": "alice", "cursor": 3}})
                    assert sees(late, b, {"user": {"name": "alice"}})
                # Documents still converge beside awareness.
                a.doc.get("t", type=pycrdt.Text).insert(0, "hi")
                await wait_for(lambda: text_of(b.doc) == "hi")


async def test_a_read_only_participant_s_awareness_crosses_as_it_does_within_a_process(
    collab_hub: CollabHub, event_store: store.EventStore, db_url: str
) -> None:
    editor = await collab_hub.token("editor")
    reader = await collab_hub.token("reader", scopes=["read:collab!room=shared"])
    async with serving(event_store, db_url) as other:
        await listening(collab_hub, other)
        async with client.connect(collab_hub.url, "shared", token=editor) as ed:
            await asyncio.wait_for(ed.synced.wait(), 10)
            async with (
                client.connect(collab_hub.url, "shared", token=editor) as near,
                client.connect(other.url, "shared", token=reader) as ro,
            ):
                await asyncio.wait_for(asyncio.gather(near.synced.wait(), ro.synced.wait()), 10)
                ro.set_user({"user": {"name": "reader"}})
                await wait_for(lambda: sees(ed, ro) and sees(near, ro))
                ed.set_user({"user": {"name": "editor"}})
                await wait_for(lambda: sees(ro, ed))


async def test_a_dropped_connection_s_cursor_vanishes_on_the_other_process_at_once(
    collab_hub: CollabHub, event_store: store.EventStore, db_url: str
) -> None:
    alice = await collab_hub.token("alice")
    async with serving(event_store, db_url) as other:
        await listening(collab_hub, other)
        async with (
            client.connect(collab_hub.url, "vanish", token=alice) as a,
            client.connect(other.url, "vanish", token=alice) as b,
        ):
            await asyncio.wait_for(asyncio.gather(a.synced.wait(), b.synced.wait()), 10)
            a.set_user({"user": {"name": "alice"}})
            await wait_for(lambda: sees(b, a))
            assert collab_hub.rooms.limits.awareness_timeout_s >= 30
            a.ws.transport.abort()  # no goodbye from the client: the server's leave says it
            # Well within the outdated timeout (30 s): the leave, not the timeout, removed it.
            await wait_for(lambda: not sees(b, a), timeout_s=10)


async def test_a_stopping_process_s_clients_vanish_from_the_others_at_once(
    collab_hub: CollabHub, event_store: store.EventStore, db_url: str
) -> None:
    """A hub that stops (a restart, say) closes its connections: their removal is relayed
    before its relay stops, so the others do not wait for the outdated timeout."""
    alice = await collab_hub.token("alice")
    assert collab_hub.rooms.limits.awareness_timeout_s >= 30
    async with contextlib.AsyncExitStack() as clients:
        watcher = await clients.enter_async_context(
            client.connect(collab_hub.url, "restart", token=alice)
        )
        await asyncio.wait_for(watcher.synced.wait(), 10)
        async with serving(event_store, db_url) as other:
            await listening(collab_hub, other)
            leaving = await clients.enter_async_context(
                client.connect(other.url, "restart", token=alice)
            )
            await asyncio.wait_for(leaving.synced.wait(), 10)
            leaving.set_user({"user": {"name": "alice"}})
            await wait_for(lambda: sees(watcher, leaving))
        # ``other`` has stopped: it closed the connection (going away) and stopped its relay.
        assert leaving.close_code is not None
        # Well within the outdated timeout (30 s): the relayed removal, not the timeout.
        await wait_for(lambda: not sees(watcher, leaving), timeout_s=10)


async def test_one_change_is_one_notification_and_nothing_bounces_back(
    collab_hub: CollabHub, event_store: store.EventStore, db_url: str
) -> None:
    alice = await collab_hub.token("alice")
    async with serving(event_store, db_url) as other:
        await listening(collab_hub, other)
        async with (
            client.connect(collab_hub.url, "pingpong", token=alice) as a,
            client.connect(other.url, "pingpong", token=alice) as b,
            client.connect(other.url, "pingpong", token=alice) as b2,
        ):
            await asyncio.wait_for(
                asyncio.gather(a.synced.wait(), b.synced.wait(), b2.synced.wait()), 10
            )
            await known_shared(collab_hub, "pingpong")
            async with watching(db_url) as watch:
                a.set_user({"user": {"name": "alice"}})
                await wait_for(lambda: sees(b, a) and sees(b2, a))
                b.set_user({"user": {"name": "alice"}})
                await wait_for(lambda: sees(a, b))
                # Each process has handed the other's change to its own clients, which is when
                # it would have queued a bounce. A last change from each side, once the watch
                # has it, closes the window without a timed wait: a process sends in order,
                # so a bounce came before its last change (or with it, naming another client).
                a_done = {"user": {"name": "alice", "done": True}}
                b_done = {"user": {"name": "alice", "done": True}}
                a.set_user(a_done)
                b.set_user(b_done)
                await wait_for(
                    lambda: relayed_state(watch, a, a_done) and relayed_state(watch, b, b_done)
                )
                updates = watch.updates()
                by_pid: dict[int, set[int]] = {}
                for pid, relayed in updates:
                    by_pid.setdefault(pid, set()).update(ids_of(relayed))
                # Each process relayed only its own clients' states: nothing bounced back.
                assert sorted(by_pid.values(), key=sorted) == sorted(
                    [{a.awareness.client_id}, {b.awareness.client_id}], key=sorted
                ), watch.seen
                # One notification per change. A query (a LISTEN connection that reconnected
                # asks again) is answered with the states held then: one more each, at most.
                assert 4 <= len(updates) <= 4 + len(watch.queries()), watch.seen
                # A burst of changes from one client is gathered (5 ms per room) into a few
                # notifications (one, here, on a quiet machine), each with the latest state;
                # the one carrying the last state is the burst's last notification.
                last = {"user": {"name": "alice", "cursor": 49}}
                for i in range(50):
                    a.set_user({"user": {"name": "alice", "cursor": i}})
                await wait_for(lambda: relayed_state(watch, a, last))
                await wait_for(lambda: sees(b, a, last))
                assert 1 <= len(watch.updates()) - 4 <= 10


async def test_states_set_before_a_room_is_known_shared_are_relayed_once_it_is(
    collab_hub: CollabHub, db_url: str
) -> None:
    """Two processes opening a room at once may each miss the other's query (a query for a
    room not open yet is ignored); the janitor's poll then finds the room shared, and what
    this process's connections had already said must go out then, not at their next renewal
    (15 s for y-protocols clients; never for this Python client)."""
    alice = await collab_hub.token("alice")
    async with (
        client.connect(collab_hub.url, "late", token=alice) as a,
        watching(db_url) as watch,
    ):
        await asyncio.wait_for(a.synced.wait(), 10)
        here = collab_hub.rooms.get("late")
        assert here is not None
        state = {"user": {"name": "alice"}}
        a.set_user(state)
        await wait_for(lambda: here.awareness.states.get(a.awareness.client_id) == state)
        await gathered()
        assert not here.shared
        assert watch.updates() == []  # alone: nothing relayed
        # Another process holds the room without a word (its query was missed).
        await execute_sql(
            db_url, "INSERT INTO collab_presence (room, process) VALUES ('late', 'elsewhere')"
        )
        await wait_for(lambda: here.shared)  # the janitor's poll (every 2 s) finds it
        await wait_for(lambda: relayed_state(watch, a, state))


async def test_a_query_heard_while_the_room_opens_makes_it_shared_once_open(
    collab_hub: CollabHub, db_url: str
) -> None:
    """Two processes opening a room at once: the other's query may come while the room is
    still loading here, before the other's presence is visible. The room is then shared as
    soon as it is open, not only at the janitor's next poll (2 s later: awareness lagged)."""
    await listening(collab_hub)
    probe = await collab_hub.rooms.open("probe")
    elsewhere = pycrdt.Awareness(pycrdt.Doc())
    elsewhere.set_local_state({"user": {"name": "probe"}})
    blocker = await asyncpg.connect(db_url)
    try:
        # Opening enters the room's presence table: hold it there while the query comes.
        held = blocker.transaction()
        await held.start()
        await blocker.execute("LOCK TABLE collab_presence IN EXCLUSIVE MODE")
        opening = asyncio.create_task(collab_hub.rooms.open("racing"))
        await wait_for(lambda: waiting_on_a_lock(db_url), every_s=0.05)
        await notify_raw(db_url, awareness.encode_query("racing"))
        # Notifications arrive in commit order: once this one is applied, the query was heard.
        payload = awareness.encode_update(
            "probe", elsewhere.encode_awareness_update([elsewhere.client_id])
        )
        assert payload is not None
        await notify_raw(db_url, payload)
        await wait_for(lambda: elsewhere.client_id in probe.awareness.states)
        await held.rollback()
        opened = await asyncio.wait_for(opening, 10)
        assert opened.shared
    finally:
        await blocker.close()


async def waiting_on_a_lock(db_url: str) -> bool:
    conn = await asyncpg.connect(db_url)
    try:
        waiting = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    finally:
        await conn.close()
    return bool(waiting)


async def gathered() -> None:
    """Return once this process's rooms have relayed (or decided not to) the awareness changes
    they have applied so far: they gather changes for ``AWARENESS_COALESCE_S`` on a timer of
    this event loop, which fires before a sleep as long begun after it (not a timed guess)."""
    await asyncio.sleep(rooms.AWARENESS_COALESCE_S)


async def test_a_process_alone_in_a_room_sends_no_awareness_notification(
    collab_hub: CollabHub,
    event_store: store.EventStore,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alice = await collab_hub.token("alice")
    sent: list[str] = []
    send = relay.Relay.relay_awareness

    def counted(self: relay.Relay, payload: str) -> None:
        sent.append(payload)  # by this process, or by ``other`` while it serves
        send(self, payload)

    monkeypatch.setattr(relay.Relay, "relay_awareness", counted)
    async with (
        watching(db_url) as watch,
        client.connect(collab_hub.url, "alone", token=alice) as a,
        client.connect(collab_hub.url, "alone", token=alice) as near,
    ):
        await asyncio.wait_for(asyncio.gather(a.synced.wait(), near.synced.wait()), 10)
        a.set_user({"user": {"name": "alice"}})
        await wait_for(lambda: sees(near, a))
        await gathered()
        assert sent == []  # nothing was handed to the relay, so no notification can follow
        assert watch.updates() == []
        async with serving(event_store, db_url) as other:
            await listening(collab_hub, other)
            async with client.connect(other.url, "alone", token=alice) as far:
                await wait_for(lambda: sees(far, a))  # the answer to its query
                a.set_user({"user": {"name": "alice", "cursor": 1}})
                await wait_for(lambda: sees(far, a, {"user": {"name": "alice", "cursor": 1}}))
                far.set_user({"user": {"name": "alice"}})
                await wait_for(lambda: sees(a, far))
            await other.rooms.close("alone")  # the other process lets the room go
        # Within a poll (2 s) of the presence table, this process knows it is alone again.
        here = collab_hub.rooms.get("alone")
        assert here is not None
        await wait_for(lambda: not here.shared, timeout_s=10)
        relayed = len(sent)
        assert relayed > 0  # while shared, this process did relay
        a.set_user({"user": {"name": "alice", "cursor": 2}})
        await wait_for(lambda: sees(near, a, {"user": {"name": "alice", "cursor": 2}}))
        await gathered()
        assert len(sent) == relayed


@pytest.mark.parametrize(
    "payload",
    [
        "{not json",
        '{"room": 5, "awareness": "AA=="}',
        '{"room": "bad-input", "awareness": "%%% not base64"}',
        '{"room": "bad-input", "awareness": "AQID"}',  # base64 of bytes that do not decode
        '{"room": "not-open-anywhere", "awareness": "AA=="}',
        '{"room": "bad-input", "query": "yes"}',
        "no-such-room",  # a wake-up for a room nobody holds
    ],
)
async def test_a_malformed_notification_is_ignored_and_the_room_goes_on(
    collab_hub: CollabHub,
    event_store: store.EventStore,
    db_url: str,
    payload: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    alice = await collab_hub.token("alice")
    async with serving(event_store, db_url) as other:
        await listening(collab_hub, other)
        async with (
            client.connect(collab_hub.url, "bad-input", token=alice) as a,
            client.connect(other.url, "bad-input", token=alice) as b,
        ):
            await asyncio.wait_for(asyncio.gather(a.synced.wait(), b.synced.wait()), 10)
            a.set_user({"user": {"name": "alice"}})
            await wait_for(lambda: sees(b, a))
            with caplog.at_level(logging.WARNING, logger="collab"):
                await notify_raw(db_url, payload)
                b.set_user({"user": {"name": "alice"}})  # after the bad one, on the same channel
                await wait_for(lambda: sees(a, b))
            if payload.startswith("{") and "not-open" not in payload:
                assert "ignoring a notification" in caplog.text
            assert a.close_code is None
            assert b.close_code is None
            a.set_user({"user": {"name": "alice", "still": "here"}})
            await wait_for(lambda: sees(b, a, {"user": {"name": "alice", "still": "here"}}))
            a.doc.get("t", type=pycrdt.Text).insert(0, "ok")
            await wait_for(lambda: text_of(b.doc) == "ok")


async def test_a_relayed_update_for_a_room_open_here_that_fails_to_apply_is_ignored(
    collab_hub: CollabHub, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    alice = await collab_hub.token("alice")
    async with client.connect(collab_hub.url, "entries", token=alice) as a:
        await asyncio.wait_for(a.synced.wait(), 10)
        await listening(collab_hub)
        # Well-formed lib0, but a state that is a JSON list: y-protocols states are objects.
        entry = b"\x01\x05\x01\x03[1]"
        with caplog.at_level(logging.WARNING, logger="collab"):
            await notify_raw(
                db_url,
                json.dumps({"room": "entries", "awareness": base64.b64encode(entry).decode()}),
            )
            await wait_for(lambda: "does not decode" in caplog.text)
        opened = collab_hub.rooms.get("entries")
        assert opened is not None
        assert 5 not in opened.awareness.states
        a.set_user({"user": {"name": "alice"}})
        await wait_for(lambda: a.awareness.client_id in opened.awareness.states)


async def test_an_oversized_state_is_applied_here_and_not_relayed(
    collab_hub: CollabHub, event_store: store.EventStore, db_url: str
) -> None:
    alice = await collab_hub.token("alice")
    big = {"user": {"name": "alice", "note": "x" * notify.MAX_PAYLOAD_BYTES}}
    async with serving(event_store, db_url) as other:
        await listening(collab_hub, other)
        async with (
            client.connect(collab_hub.url, "big", token=alice) as a,
            client.connect(collab_hub.url, "big", token=alice) as near,
            client.connect(other.url, "big", token=alice) as far,
        ):
            await asyncio.wait_for(
                asyncio.gather(a.synced.wait(), near.synced.wait(), far.synced.wait()), 10
            )
            await known_shared(collab_hub, "big")
            async with watching(db_url) as watch:
                a.set_user(big)
                await wait_for(lambda: sees(near, a, big))  # applied and sent locally
                near.set_user({"user": {"name": "alice"}})  # relayed, after the big one
                await wait_for(lambda: sees(far, near))
                assert not sees(far, a)
                assert [ids_of(m) for _pid, m in watch.updates()] == [[near.awareness.client_id]]
            a.set_user({"user": {"name": "alice", "note": "small again"}})
            await wait_for(lambda: sees(far, a, {"user": {"name": "alice", "note": "small again"}}))


async def test_relayed_states_not_renewed_expire_and_come_back_when_renewed(
    collab_hub: CollabHub, event_store: store.EventStore, db_url: str
) -> None:
    alice = await collab_hub.token("alice")
    short = collab_limits.Limits(room_grace_s=3600, awareness_timeout_s=1.5)
    async with serving(event_store, db_url, short) as other:
        await listening(collab_hub, other)
        async with (
            client.connect(collab_hub.url, "expire", token=alice) as a,
            client.connect(collab_hub.url, "expire", token=alice) as near,
            client.connect(other.url, "expire", token=alice) as far,
        ):
            await asyncio.wait_for(
                asyncio.gather(a.synced.wait(), near.synced.wait(), far.synced.wait()), 10
            )
            loop = asyncio.get_running_loop()
            a.set_user({"user": {"name": "alice"}})  # the Python client does not renew by itself
            await wait_for(lambda: sees(far, a))
            seen_at = loop.time()
            await wait_for(lambda: not sees(far, a), timeout_s=10)
            assert loop.time() - seen_at >= 1.0  # not before the timeout (1.5 s, 1 s janitor)
            assert sees(near, a)  # on its own process, a connected client's state stays
            a.set_user({"user": {"name": "alice", "renewed": True}})
            await wait_for(lambda: sees(far, a, {"user": {"name": "alice", "renewed": True}}))


async def test_a_killed_process_leaves_no_ghost_cursor(
    event_store: store.EventStore, db_url: str, tmp_path: Path
) -> None:
    """A real hub process holding a client is killed (no goodbye, no removal relayed): the
    other process drops the client's state once it is not renewed."""
    short = collab_limits.Limits(room_grace_s=3600, awareness_timeout_s=1.5)
    async with serving(event_store, db_url, short) as here:
        await listening(here)
        alice = await here.token("alice")
        port = ports.free_port()
        env = hub_process_env(db_url, tmp_path / "none.toml", tmp_path / "state") | {
            "CHRONOHUB_ADMIN_USERS": json.dumps(COLLAB_CONFIG["admin_users"]),
            "CHRONOHUB_SERVICES": json.dumps(COLLAB_CONFIG["services"]),
            "CHRONOHUB_ROLES": json.dumps(COLLAB_CONFIG["roles"]),
        }
        with open(tmp_path / "hub.log", "wb") as hub_log:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "hub.cli", "serve", "--ip", "127.0.0.1", "--port", str(port),
                "--hub-port", "0",
                env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=hub_log,
            )  # fmt: skip
        try:
            assert process.stdout is not None
            banner = await asyncio.wait_for(process.stdout.readline(), 60)
            assert b"chronohub serving" in banner, (banner, (tmp_path / "hub.log").read_text())
            async with (
                client.connect(here.url, "ghost", token=alice) as watcher,
                client.connect(f"ws://127.0.0.1:{port}", "ghost", token=alice) as doomed,
            ):
                await asyncio.wait_for(
                    asyncio.gather(watcher.synced.wait(), doomed.synced.wait()), 10
                )
                doomed.set_user({"user": {"name": "alice"}})
                await wait_for(lambda: sees(watcher, doomed))
                process.send_signal(signal.SIGKILL)
                await asyncio.wait_for(process.wait(), 30)
                await wait_for(lambda: not sees(watcher, doomed), timeout_s=10)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


def hostile(*entries: tuple[int, int, Any]) -> bytes:
    return protocol.awareness_message(protocol.encode_awareness(entries))


async def test_a_reader_cannot_remove_take_over_or_restyle_a_writer_s_cursor(
    collab_hub: CollabHub, event_store: store.EventStore, db_url: str
) -> None:
    """A read-only watcher, on this process and on another, sends entries for the writer's
    client id with higher clocks (a removal, a takeover), answers as if queried with every
    state it knows, sets a colour carrying CSS, and leaves: the writer's cursor stays as the
    writer set it for everyone, and the watcher's colour reaches nobody."""
    editor = await collab_hub.token("editor")
    reader = await collab_hub.token("reader", scopes=["read:collab!room=shared"])
    css = "red;position:fixed;inset:0;z-index:99;background:url(/user/x/y)"
    styled = {"user": {"name": "reader", "color": css, "colorLight": css}}
    unstyled = {"user": {"name": "reader"}}
    mine = {"user": {"name": "editor", "color": "#2e86ab"}, "cursor": {"anchor": 1}}

    async def attack(url: str, ed: client.RoomClient, near: client.RoomClient) -> None:
        victim = ed.awareness.client_id
        async with client.connect(url, "shared", token=reader) as ro:
            await asyncio.wait_for(ro.synced.wait(), 10)
            await wait_for(lambda: sees(ro, ed, mine))
            clock = ed.awareness.meta[victim]["clock"]
            await ro.send_raw(hostile((victim, clock + 10, None)))
            taken = {"user": {"name": "editor"}, "cursor": {"anchor": 99}}
            await ro.send_raw(hostile((victim, clock + 11, taken)))
            # what a client answering QueryAwareness sends: every state it knows
            everyone = ro.awareness.encode_awareness_update(list(ro.awareness.states))
            await ro.send_raw(protocol.awareness_message(everyone))
            ro.set_user(styled)
            # frames are handled in order: once its own state is seen, the others were
            await wait_for(lambda: sees(near, ro, unstyled))
            assert sees(ro, ro, styled)  # a client keeps its own state as it set it
            assert sees(near, ed, mine)
            assert near.awareness.meta[victim]["clock"] == clock
            assert ro.close_code is None  # entries dropped, the connection kept
        # it left: its own state went, the writer's stayed
        await wait_for(lambda: not sees(near, ro))
        assert sees(near, ed, mine)

    async with serving(event_store, db_url) as other:
        await listening(collab_hub, other)
        async with (
            client.connect(collab_hub.url, "shared", token=editor) as ed,
            client.connect(collab_hub.url, "shared", token=editor) as near,
        ):
            await asyncio.wait_for(asyncio.gather(ed.synced.wait(), near.synced.wait()), 10)
            ed.set_user(mine)
            await wait_for(lambda: sees(near, ed, mine))
            await attack(collab_hub.url, ed, near)
            await attack(other.url, ed, near)
            here = collab_hub.rooms.get("shared")
            assert here is not None
            assert here.awareness.states[ed.awareness.client_id] == mine
