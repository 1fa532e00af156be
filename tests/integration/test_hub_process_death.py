"""A hub process killed (kill -9) behind nginx leaves no work stuck (issue 20): its
collaboration session is taken over by another process once its lease expires (the room and
the notebook survive, the kernel restarts, the participants see it in the document), and its
users' servers are still reached through the others, stopped by them when asked, and watched
by them (one that dies on its own is recorded failed)."""

from __future__ import annotations

import contextlib
import json
import signal
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pycrdt
import pytest

from collab import client as collab_client
from collab import notebook
from hub import processes
from hub.servers import watch_others
from tests.helpers import wait_for
from tests.integration.nginx_hubs import UPSTREAM, Hubs, StartHubs
from tests.integration.serve_process import Served
from tests.integration.test_collab_sessions_api import cell, nb, stream_text

pytestmark = [pytest.mark.integration, pytest.mark.interop, pytest.mark.collab]

LEASE_S = 3.0


def process_at(hubs: Hubs, upstream: str) -> Served:
    """The process nginx calls ``upstream``."""
    (found,) = [p for p in hubs.processes if hubs.upstream_of(p) == upstream]
    return found


@contextlib.asynccontextmanager
async def joined(hubs: Hubs, room: str, token: str, doc: Any = None) -> AsyncIterator[Any]:
    """A pycrdt client in ``room`` through nginx, synced; ``.upstream``: its process."""
    ws_base = hubs.base.replace("http://", "ws://")
    async with collab_client.connect(ws_base, room, token=token, doc=doc) as client:
        await wait_for(client.synced.is_set, timeout_s=30)
        yield client


def requests_of(client: Any) -> pycrdt.Map[Any]:
    return client.doc.get(notebook.REQUESTS, type=pycrdt.Map)


def request_status(client: Any, key: str) -> dict[str, Any]:
    entry = requests_of(client).get(key)
    return dict(entry) if entry else {}


async def test_a_dead_owners_session_is_taken_over_and_its_participants_see_it(
    nginx_hubs: StartHubs, db_url: str
) -> None:
    hubs = await nginx_hubs(2, f"collab_session_lease_s = {LEASE_S}\n")
    alice = (await hubs.call("POST", "/users/alice/tokens", json={})).body["token"]
    bob = (await hubs.call("POST", "/users/bob/tokens", json={})).body["token"]
    made = await hubs.call(
        "POST",
        "/collab/sessions",
        alice,
        json={
            "notebook": nb(
                "import time; print('asleep', flush=True); time.sleep(600)", "print(6 * 7)"
            )
        },
    )
    assert made.status == 201, made
    session, room = made.body["id"], made.body["room"]
    owner = process_at(hubs, made.upstream)
    # Two participants: round robin puts one on each process.
    async with joined(hubs, room, alice) as a, joined(hubs, room, bob) as b:
        on = {
            a.ws.response.headers[UPSTREAM],
            b.ws.response.headers[UPSTREAM],
        }
        assert on == {hubs.upstream_of(p) for p in hubs.processes}
        staying = a if a.ws.response.headers[UPSTREAM] != made.upstream else b
        leaving = b if staying is a else a
        notes = a.doc.get("notes", type=pycrdt.Text)
        notes += "written before the kill"
        await wait_for(lambda: str(b.doc.get("notes", type=pycrdt.Text)) == str(notes))
        requests_of(a)["before"] = {"cell_id": "c0"}
        await wait_for(lambda: "asleep" in stream_text(b.doc, "c0"), timeout_s=60)
        assert request_status(b, "before")["status"] == "running"

        owner.kill()
        await owner.process.wait()
        # The client of the dead process was cut off; it joins again (nginx sends it to the
        # process left) with its own document.
        await leaving.wait_closed()
        async with joined(hubs, room, bob if leaving is b else alice, leaving.doc) as back:
            # Once the lease has expired, the process left takes the session over (its sweep;
            # nobody calls): the request that was running is aborted, in everyone's document.
            def aborted(client: Any) -> bool:
                entry = request_status(client, "before")
                return entry.get("status") == "aborted" and entry.get("reason") == (
                    "the session was restarted"
                )

            await wait_for(lambda: aborted(staying) and aborted(back), timeout_s=LEASE_S + 60)
            assert str(staying.doc.get("notes", type=pycrdt.Text)) == "written before the kill"
            assert str(back.doc.get("notes", type=pycrdt.Text)) == "written before the kill"
            assert "asleep" in stream_text(back.doc, "c0")  # outputs stay
            # and the cell left running by the dead kernel is idle (the page says "idle")
            assert cell(staying.doc, "c0")["execution_state"] == "idle"
            # The new kernel runs what is asked next, for both.
            requests_of(back)["after"] = {"cell_id": "c1"}
            await wait_for(
                lambda: request_status(staying, "after").get("status") == "ok", timeout_s=60
            )
            assert stream_text(staying.doc, "c1") == "42\n"
            assert cell(back.doc, "c1")["execution_count"] == 1  # a fresh kernel's first
        shown = await hubs.call("GET", f"/collab/sessions/{session}", alice)
        assert shown.status == 200, shown
        assert shown.body["state"] == "running"
        assert shown.upstream != made.upstream
    conn = await asyncpg.connect(db_url)
    try:
        row = await conn.fetchrow(
            "SELECT origin, lease_until > now() AS leased FROM collab_session_owners"
            " WHERE session_id = $1",
            uuid.UUID(session),
        )
        logged = await conn.fetch(
            "SELECT event_type, data FROM events WHERE stream_id = $1 ORDER BY stream_version",
            f"collab_session-{session}",
        )
        types = [r["event_type"] for r in logged]
        created = [
            json.loads(r["data"]) for r in logged if r["event_type"] == "collab_session.created"
        ]
    finally:
        await conn.close()
    assert row is not None
    assert row["leased"], (dict(row), [p.url for p in hubs.processes])
    assert types.count("collab_session.kernel_started") == 2, types
    assert [c.get("taken_over", False) for c in created] == [False, True]
    assert {c["created_by"] for c in created} == {"alice"}  # its kernel runs as alice's still


async def test_a_dead_processs_servers_are_reached_stopped_and_watched_through_another(
    nginx_hubs: StartHubs, db_url: str
) -> None:
    hubs = await nginx_hubs(2)
    await hubs.call("POST", "/users/carol")
    spawned = await hubs.call("POST", "/users/alice/server")
    assert spawned.status == 202, spawned
    await hubs.call("GET", "/")  # the other process's turn
    also = await hubs.call("POST", "/users/carol/server")
    assert also.status == 202, also
    assert also.upstream == spawned.upstream  # both started by one process

    async def ready(name: str) -> bool:
        answer = await hubs.call("GET", f"/users/{name}")
        return bool(answer.body["servers"].get("", {}).get("ready"))

    for name in ("alice", "carol"):
        await wait_for(lambda name=name: ready(name), timeout_s=60, every_s=0.1)
    answered: set[str] = set()

    async def routed_everywhere() -> bool:  # a moment after ready (each proxy is woken)
        async with hubs.session.get(hubs.url("/user/alice/api"), allow_redirects=False) as r:
            if r.status == 200:
                answered.add(r.headers[UPSTREAM])
        return len(answered) == 2

    await wait_for(routed_everywhere, timeout_s=5, every_s=0.05)
    pid, carols = await server_pid(db_url, "alice"), await server_pid(db_url, "carol")
    spawner = process_at(hubs, spawned.upstream)
    spawner.kill()
    await spawner.process.wait()
    # The servers outlive the hub process that started them, and the process left routes to
    # them…
    assert processes.exists(pid)
    for _ in range(2):
        async with hubs.session.get(hubs.url("/user/alice/api"), allow_redirects=False) as r:
            assert r.status == 200, await r.text()
            assert await r.json() == {"version": "fake"}
            assert r.headers[UPSTREAM] != spawned.upstream
    # …stops them when asked…
    stopped = await hubs.call("DELETE", "/users/alice/server")
    assert stopped.status in (202, 204), stopped
    assert stopped.upstream != spawned.upstream

    async def gone() -> bool:
        async with hubs.session.get(hubs.url("/user/alice/api"), allow_redirects=False) as r:
            unrouted = r.status != 200
        answer = await hubs.call("GET", "/users/alice")
        return unrouted and "" not in answer.body["servers"]

    await wait_for(gone, timeout_s=30, every_s=0.1)
    await wait_for(lambda: not processes.exists(pid), timeout_s=10)
    # …and watches them: one that dies on its own is recorded failed, its route removed.
    processes.signal_group(carols, signal.SIGKILL)

    async def failed() -> bool:
        conn = await asyncpg.connect(db_url)
        try:
            row = await conn.fetchrow(
                "SELECT state, reason FROM servers WHERE user_name = 'carol' AND server_name = ''"
            )
        finally:
            await conn.close()
        return bool(row["state"] == "failed" and "exited on its own" in row["reason"])

    await wait_for(failed, timeout_s=watch_others.CHECK_S + 15, every_s=0.2)
    async with hubs.session.get(hubs.url("/user/carol/api"), allow_redirects=False) as r:
        assert r.status != 200
    # And alice's starts again, through the process left.
    again = await hubs.call("POST", "/users/alice/server")
    assert again.status == 202, again
    await wait_for(lambda: ready("alice"), timeout_s=60, every_s=0.1)
    stopped = await hubs.call("DELETE", "/users/alice/server")
    assert stopped.status in (202, 204), stopped


async def server_pid(db_url: str, user: str) -> int:
    """The pid the log recorded for ``user``'s default server."""
    conn = await asyncpg.connect(db_url)
    try:
        pid = await conn.fetchval(
            "SELECT pid FROM servers WHERE user_name = $1 AND server_name = ''", user
        )
    finally:
        await conn.close()
    assert isinstance(pid, int), pid
    return pid
