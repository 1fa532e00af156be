"""Shared execution sessions over REST, bound to real rooms: a real ipykernel, real PostgreSQL,
room clients on real WebSockets, and the browser's login cookie for rooms."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import pycrdt
import pytest

from collab import access as room_access
from collab import client, execution, notebook
from events import store
from events.catalog import collab_sessions as session_events
from hub.api import collab as collab_api
from tests.helpers import wait_for
from tests.integration import browser
from tests.integration.collab_fixtures import CollabHub, serving

pytestmark = [pytest.mark.integration, pytest.mark.collab]

SESSIONS = "/collab/sessions"


def nb(*sources: str) -> dict[str, Any]:
    """A notebook with code cells c0, c1… and a markdown cell ``md``."""
    code = [
        {
            "id": f"c{i}",
            "cell_type": "code",
            "source": source,
            "metadata": {},
            "outputs": [],
            "execution_count": None,
        }
        for i, source in enumerate(sources)
    ]
    markdown = {"id": "md", "cell_type": "markdown", "source": "# notes", "metadata": {}}
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [*code, markdown]}


def cell(doc: pycrdt.Doc[Any], cell_id: str) -> dict[str, Any]:
    """A cell of a document, as plain data (``{}`` while it is not there)."""
    for entry in doc.get(notebook.CELLS, type=pycrdt.Array).to_py() or []:
        if entry.get("id") == cell_id:
            found: dict[str, Any] = entry
            return found
    return {}


def stream_text(doc: pycrdt.Doc[Any], cell_id: str) -> str:
    return "".join(str(o.get("text", "")) for o in cell(doc, cell_id).get("outputs", []))


async def session_events_of(event_store: store.EventStore, session_id: str) -> list[Any]:
    return await event_store.read_stream(session_events.stream_id(uuid.UUID(session_id)))


async def _count(items: Any, n: int) -> bool:
    return len(await items) >= n


async def all_events(event_store: store.EventStore) -> int:
    return len(await event_store.read_all(limit=100_000))


async def test_a_session_runs_a_cell_asked_over_rest_and_its_output_reaches_the_room(
    collab_hub: CollabHub,
) -> None:
    alice = await collab_hub.token("alice")
    status, created = await collab_hub.api.call(
        "POST", SESSIONS, alice, json={"notebook": nb("print('hi from the kernel')")}
    )
    assert status == 201, created
    collab_api.CollabSession.model_validate(created)  # the reply documented in the OpenAPI
    assert created["ws_url"] == f"{collab_hub.url}/collab/{created['room']}"
    assert created["state"] == "running"
    assert created["kernel_name"] == "python3"
    async with client.connect(collab_hub.url, created["room"], token=alice) as joined:
        await wait_for(lambda: cell(joined.doc, "c0"))  # the notebook came through the room
        status, asked = await collab_hub.api.call(
            "POST", f"{SESSIONS}/{created['id']}/execute", alice, json={"cell_id": "c0"}
        )
        assert status == 202, asked
        collab_api.ExecutionAccepted.model_validate(asked)
        assert asked["status"] == "queued"
        assert asked["cell_id"] == "c0"
        await wait_for(lambda: "hi from the kernel" in stream_text(joined.doc, "c0"), timeout_s=30)
        await wait_for(lambda: cell(joined.doc, "c0").get("execution_state") == "idle")
        assert cell(joined.doc, "c0")["execution_count"] == 1
        status, shown = await collab_hub.api.call("GET", f"{SESSIONS}/{created['id']}", alice)
        assert status == 200, shown
        assert shown["participants"] == 1, shown
    # The outputs are in the room's persisted log, not only in memory.
    room = collab_hub.rooms.get(created["room"])
    assert room is not None
    await room.flushed()
    loaded = await collab_hub.rooms.store.load(created["room"])
    persisted: pycrdt.Doc[Any] = pycrdt.Doc()
    persisted.apply_update(loaded.update)
    assert "hi from the kernel" in stream_text(persisted, "c0")
    kinds = [e.type for e in await session_events_of(collab_hub.api.store, created["id"])]
    assert kinds[:2] == ["collab_session.created", "collab_session.kernel_started"]
    requested = [
        e for e in await session_events_of(collab_hub.api.store, created["id"])
        if e.type == "collab_session.execution_requested"
    ]  # fmt: skip
    assert [(e.data.requester, e.data.via, e.metadata.actor.name) for e in requested] == [
        ("alice", "api", "alice")
    ]


async def test_a_request_written_into_the_document_runs_as_its_writer(
    collab_hub: CollabHub,
) -> None:
    alice = await collab_hub.token("alice")
    editor = await collab_hub.token("editor")  # write:collab!room=shared
    reader = await collab_hub.token("reader", scopes=["read:collab!room=shared"])
    status, created = await collab_hub.api.call(
        "POST", SESSIONS, editor, json={"room": "shared", "notebook": nb("21 * 2")}
    )
    assert status == 201, created
    async with (
        client.connect(collab_hub.url, "shared", token=editor) as writer,
        client.connect(collab_hub.url, "shared", token=reader) as watcher,
    ):
        await wait_for(lambda: cell(writer.doc, "c0"))
        requests = writer.doc.get(notebook.REQUESTS, type=pycrdt.Map)
        requests["run-1"] = {"cell_id": "c0"}
        await wait_for(lambda: (requests.get("run-1") or {}).get("status") == "ok", timeout_s=30)
        await wait_for(lambda: cell(watcher.doc, "c0").get("outputs"))
        assert cell(watcher.doc, "c0")["outputs"][0]["data"]["text/plain"] == "42"
        # A read-only participant cannot ask: its update is refused by the room.
        watcher.doc.get(notebook.REQUESTS, type=pycrdt.Map)["run-2"] = {"cell_id": "c0"}
        await wait_for(lambda: watcher.denied)
        # ... nor over REST (403: it may read the room, not run in it); nor may alice,
        # whose write:collab!user=alice does not reach editor's room (404).
        for token, expected in ((reader, 403), (alice, 404)):
            status, _ = await collab_hub.api.call(
                "POST", f"{SESSIONS}/{created['id']}/execute", token, json={"cell_id": "c0"}
            )
            assert status == expected
    events = await session_events_of(collab_hub.api.store, created["id"])
    requested = [e for e in events if e.type == "collab_session.execution_requested"]
    assert [(e.data.requester, e.data.via) for e in requested] == [("editor", "document")]
    assert "run-2" not in writer.doc.get(notebook.REQUESTS, type=pycrdt.Map)


async def test_bad_input_is_refused_clearly_and_writes_nothing(collab_hub: CollabHub) -> None:
    alice = await collab_hub.token("alice")
    no_collab = await collab_hub.token("bob", scopes=["read:users:name!user=bob"])
    api, event_store = collab_hub.api, collab_hub.api.store
    await collab_hub.rooms.open("shared", creator=room_access.Participant("user", "editor", True))
    before = await all_events(event_store)
    refused = [
        ({"notebook": {"nbformat": 3, "cells": []}}, 400, "nbformat 4"),
        ({"notebook": {**nb("1"), "cells": [{"cell_type": "code"}]}}, 400, "notebook"),
        ({"notebook": nb("1"), "kernel_name": "no-such-kernel"}, 400, "no-such-kernel"),
        ({"room": " bad room"}, 400, "invalid room name"),
        ({"kernel": "python3"}, 400, "unknown field"),
    ]
    for payload, expected, words in refused:
        status, reply = await api.call("POST", SESSIONS, alice, json=payload)
        assert status == expected, (payload, reply)
        assert words in reply["message"], reply
    status, reply = await api.call("POST", SESSIONS, no_collab, json={})
    assert status == 403
    assert "write:collab" in reply["message"]
    status, reply = await api.call("POST", SESSIONS, alice, json={"room": "shared"})
    assert status == 404, reply  # alice's write:collab!user=alice does not reach editor's room
    assert await all_events(event_store) == before  # nothing written by any of these

    status, created = await api.call("POST", SESSIONS, alice, json={"notebook": nb("1 + 1")})
    assert status == 201, created
    one = f"{SESSIONS}/{created['id']}"
    before = await all_events(event_store)
    for path, token, payload, expected, words in [
        (f"{SESSIONS}/{uuid.uuid4()}/execute", alice, {"cell_id": "c0"}, 404, "No such session"),
        (f"{SESSIONS}/not-a-uuid", alice, None, 404, "No such session"),
        (f"{one}/execute", alice, {"cell_id": "nope"}, 404, "no cell with id 'nope'"),
        (f"{one}/execute", alice, {"cell_id": "md"}, 400, "markdown cell"),
        (f"{one}/execute", alice, {}, 400, "cell_id"),
        (f"{one}/execute", no_collab, {"cell_id": "c0"}, 403, "write:collab"),
    ]:
        method = "GET" if payload is None else "POST"
        status, reply = await api.call(method, path, token, json=payload)
        assert status == expected, (path, reply)
        assert words in reply["message"], reply
    # Another session in the same room, or a notebook for a room that holds one: 409.
    status, reply = await api.call("POST", SESSIONS, alice, json={"room": created["room"]})
    assert status == 409
    assert "already has a running session" in reply["message"]
    assert await all_events(event_store) == before


async def test_interrupt_restart_and_delete(collab_hub: CollabHub) -> None:
    alice = await collab_hub.token("alice")
    api = collab_hub.api
    status, created = await api.call(
        "POST",
        SESSIONS,
        alice,
        json={
            "notebook": nb("import time; print('asleep', flush=True); time.sleep(60)", "'after'")
        },
    )
    assert status == 201, created
    one = f"{SESSIONS}/{created['id']}"
    status, first = await api.call("POST", f"{one}/execute", alice, json={"cell_id": "c0"})
    assert status == 202
    status, queued = await api.call("POST", f"{one}/execute", alice, json={"cell_id": "c1"})
    assert status == 202
    bound = collab_hub.sessions.get(uuid.UUID(created["id"])) if collab_hub.sessions else None
    assert bound is not None
    # Interrupted once the kernel is inside the cell (earlier, it would not interrupt it).
    await wait_for(lambda: "asleep" in stream_text(bound.session.doc, "c0"), timeout_s=30)
    status, _ = await api.call("POST", f"{one}/interrupt", alice)
    assert status == 200

    async def finished() -> list[tuple[str, str]]:
        events = await session_events_of(api.store, created["id"])
        return [
            (e.data.request_id, e.data.status)
            for e in events
            if e.type == "collab_session.execution_finished"
        ]

    # The queued cell runs after the interrupted one (or is aborted by ipykernel, which
    # drops what arrives just after an error): either way it ends.
    await wait_for(lambda: _count(finished(), 2), timeout_s=30)
    assert (await finished())[0] == (first["request_id"], "error")
    assert (await finished())[1][0] == queued["request_id"]
    outputs = cell(bound.session.doc, "c0")["outputs"]
    assert any(o.get("ename") == "KeyboardInterrupt" for o in outputs), outputs
    status, restarted = await api.call("POST", f"{one}/restart", alice)
    assert status == 200
    assert restarted == {"aborted_requests": 0}
    status, _ = await api.call("DELETE", one, alice)
    assert status == 204
    status, _ = await api.call("GET", one, alice)
    assert status == 404
    status, listed = await api.call("GET", SESSIONS, alice)
    assert status == 200
    assert listed == {"sessions": []}
    kinds = [e.type for e in await session_events_of(api.store, created["id"])]
    for kind in ("kernel_interrupted", "kernel_restarted", "kernel_shut_down", "ended"):
        assert f"collab_session.{kind}" in kinds
    room = collab_hub.rooms.get(created["room"])
    assert room is not None
    assert not room.pins


async def test_the_last_participant_leaving_ends_the_session_after_the_grace_period(
    event_store: store.EventStore, db_url: str
) -> None:
    async with serving(event_store, db_url, session_grace_s=1.0) as hub:
        alice = await hub.token("alice")
        status, created = await hub.api.call("POST", SESSIONS, alice, json={})
        assert status == 201, created
        manager = hub.sessions
        assert manager is not None
        session_id = uuid.UUID(created["id"])

        def participants() -> int | None:
            bound = manager.get(session_id)
            return bound.session.participants if bound is not None else None

        def grace_timers() -> list[asyncio.Task[Any]]:
            """The session's pending grace timer (its task is named after the session)."""
            name = f"session-grace-{session_id}"
            return [t for t in asyncio.all_tasks() if t.get_name() == name and not t.done()]

        # Nobody has joined yet: the grace period runs from the start.
        await wait_for(grace_timers)
        async with client.connect(hub.url, created["room"], token=alice):
            await wait_for(lambda: participants() == 1)
            # The join cancels the timer: nothing is left to end the session while she stays.
            await wait_for(lambda: not grace_timers())
            assert participants() == 1
        await wait_for(lambda: manager.get(session_id) is None, timeout_s=15)
        ended = [
            e for e in await session_events_of(event_store, created["id"])
            if e.type == "collab_session.ended"
        ]  # fmt: skip
        assert [e.data.reason for e in ended] == ["idle"]
        # A session still running when the hub stops is shut down with it.
        status, other = await hub.api.call("POST", SESSIONS, alice, json={})
        assert status == 201
    kinds = [e.type for e in await session_events_of(event_store, other["id"])]
    assert kinds[-1] == "collab_session.ended"


async def test_a_browser_joins_a_room_with_the_login_cookie_from_the_hubs_origin_only(
    collab_hub: CollabHub,
) -> None:
    await browser.set_password(collab_hub.api, "alice")
    base = str(collab_hub.api.client.make_url("")).rstrip("/")
    page = browser.Browser(base)
    try:
        logged_in = await page.login("alice")
        assert logged_in.status == 302, logged_in.text
        url = f"{collab_hub.url}/hub/collab/alice-notes"
        async with page.session.ws_connect(url, origin=base) as ws:
            first = await ws.receive(timeout=10)
            assert first.type is aiohttp.WSMsgType.BINARY  # sync step 1: admitted
        async with page.session.ws_connect(url, origin="http://evil.example") as ws:
            refusal = await ws.receive(timeout=10)
            closed = await ws.receive(timeout=10)
            assert refusal.type is aiohttp.WSMsgType.BINARY  # the protocol's auth message
            assert closed.type is aiohttp.WSMsgType.CLOSE
            assert closed.data == 4403
            assert "cross-origin" in closed.extra
    finally:
        await page.close()
    async with aiohttp.ClientSession() as anonymous:  # no cookie, no token
        url = f"{collab_hub.url}/hub/collab/alice-notes"
        async with anonymous.ws_connect(url, origin=base) as ws:
            await ws.receive(timeout=10)
            closed = await ws.receive(timeout=10)
            assert closed.type is aiohttp.WSMsgType.CLOSE
            assert closed.data == 4401


async def test_collab_events_are_readable_with_read_events_collab(collab_hub: CollabHub) -> None:
    alice = await collab_hub.token("alice")
    status, created = await collab_hub.api.call("POST", SESSIONS, alice, json={})
    assert status == 201, created
    admin = await collab_hub.token("admin")
    auditor = await collab_hub.token("admin", scopes=["read:events:collab"])
    sessions_only = await collab_hub.token("admin", scopes=["read:events:collab_sessions"])
    del admin
    status, page = await collab_hub.api.call("GET", "/events?limit=1000", auditor)
    assert status == 200, page
    prefixes = {event["type"].split(".", 1)[0] for event in page}
    assert prefixes == {"collab", "collab_session"}, prefixes
    status, page = await collab_hub.api.call("GET", "/events?limit=1000", sessions_only)
    assert status == 200, page
    assert {event["type"].split(".", 1)[0] for event in page} == {"collab_session"}


async def test_may_write_asks_the_participants_own_roles_on_the_room(
    collab_hub: CollabHub,
) -> None:
    check = collab_api.may_write(collab_hub.api.store, collab_hub.rooms)
    await collab_hub.token("alice")
    await collab_hub.token("reader")
    await collab_hub.token("editor")
    await collab_hub.rooms.open("shared", creator=room_access.Participant("user", "editor", True))
    alice = room_access.Participant("user", "alice", can_write=True)
    await collab_hub.rooms.open("alice-room", creator=alice)
    user = execution.Participant
    assert await check("alice-room", user("alice"))  # the user role: write:collab!user
    assert await check("shared", user("editor"))  # write:collab!room=shared
    assert await check("shared", user("alice")) is False
    assert await check("shared", user("reader")) is False  # read:collab only
    assert await check("shared", user("nobody")) is False  # no such user
    assert await check("shared", user("bench", "service")) is False  # no collab role
    assert await check("shared", user("ghost", "service")) is False  # no such service
