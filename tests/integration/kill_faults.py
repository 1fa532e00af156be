"""The hub process killed (SIGKILL) in the middle of its background work, then started again on
the same data directory (``fault_hub``, the harness; ``db_faults`` runs these cases with the
others in ``make faults``):

* ``spawn_kill``: during spawns: each server acknowledged (2xx) ends running and recorded, or
  stopped and recorded, never stuck pending; no server process left running unrecorded;
* ``compaction_kill``: during a room's compaction (held in its transaction by a lock of the
  test's): every update the room acknowledged (broadcast to another participant) is in the
  room after the restart, which equals the acknowledged document;
* ``execution_kill``: during a shared session's execution: the outputs the participants saw
  are in the room after the restart;
* ``webhook_kill``: during a webhook delivery (the receiver holding it): the delivery is sent
  again after the restart with the same delivery id, and everything acknowledged is delivered;
* ``idempotent_kill``: under API writes carrying ``Idempotency-Key``, retried by their clients
  when the kill leaves them unanswered: every retry gets the first answer (201), no user is
  created twice.

Each returns ``acked_lost`` and ``recovery_s`` (from the kill until the case's work is whole
again) with its own figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pycrdt

from collab import client as collab_client
from hub import processes
from tests.helpers import wait_for
from tests.integration.fault_hub import FaultHub, children

FAKE_SERVER = Path(__file__).resolve().parent.parent / "spawners" / "fake_server.py"
# A fake single-user server that takes a while to listen, so that the kill finds spawns at
# every stage: requested, started (a pid recorded), ready.
SPAWN_SETTINGS = f"""
single_user_mode = true
single_user_mode_all_users = true
spawner_cmd = {json.dumps([sys.executable, str(FAKE_SERVER), "slow"])}
spawner_env = {{ FAKE_DELAY = "2" }}
slow_spawn_timeout = 0.2
start_timeout = 30
term_timeout = 2
"""
COMPACT_AFTER = 20
COMPACTION_ENV = {"CHRONOHUB_COLLAB_COMPACT_AFTER_UPDATES": str(COMPACT_AFTER)}
SERVERS = "SELECT user_name, state, pid FROM servers WHERE server_name = ''"
# The compaction blocked on the test's lock, inside its transaction.
COMPACTION_BLOCKED = """
SELECT count(*) FROM pg_stat_activity
 WHERE query LIKE 'INSERT INTO collab_snapshots%' AND wait_event_type = 'Lock'
"""
SNAPSHOTS = "SELECT count(*) FROM collab_snapshots WHERE room = $1"


# --- spawns -----------------------------------------------------------------------------------


async def spawn_kill(hub: FaultHub, users: int = 6) -> dict[str, Any]:
    """Servers spawned one after another, the hub killed right after the last was
    acknowledged: some are ready, some started (a pid, not yet listening), the last perhaps
    only requested."""
    names = [f"spawner{i}" for i in range(users)]
    for name in names:
        status, body, _, _ = await hub.call("POST", f"/users/{name}")
        assert status == 201, body
    acked = []
    for i, name in enumerate(names):
        status, body, _, _ = await hub.call("POST", f"/users/{name}/server")
        if status in (201, 202):
            acked.append(name)
        if i == 1:  # the first two ready before the others start: adopted after the kill

            async def ready() -> bool:
                states = await _server_states(hub)
                return all(states.get(n, ("", None))[0] == "ready" for n in names[:2])

            await wait_for(ready, timeout_s=30, every_s=0.1)
    before = await _server_states(hub)
    killed = time.monotonic()
    restart_s = await hub.kill_and_restart()

    async def settled() -> bool:
        states = await _server_states(hub)
        return all(states.get(name, ("none", None))[0] in ("ready", "stopped", "failed",
                                                            "none") for name in acked)  # fmt: skip

    with contextlib.suppress(AssertionError):
        await wait_for(settled, timeout_s=60, every_s=0.1)
    recovery = time.monotonic() - killed
    after = await _server_states(hub)
    alive = _fake_servers(hub.root)
    stuck, wrong = [], []
    for name in acked:
        state, pid = after.get(name, ("none", None))
        if state not in ("ready", "stopped", "failed", "none"):
            stuck.append(f"{name}: {state}")
        elif state == "ready" and (pid is None or pid not in alive.get(name, set())):
            wrong.append(f"{name}: ready, but its process {pid} is gone")
        elif (
            state == "ready"
            and before.get(name, ("", None))[0] == "ready"
            and (pid != before[name][1])
        ):
            wrong.append(f"{name}: ready before the kill as {before[name][1]}, now as {pid}")
        elif state != "ready" and alive.get(name):
            wrong.append(f"{name}: {state}, but its process {sorted(alive[name])} runs (orphan)")
    strays = sorted(set(alive) - set(acked))
    return {
        "acked_writes": len(acked),
        "acked_lost": len(stuck) + len(wrong),
        "recovery_s": round(recovery, 2),
        "restart_s": round(restart_s, 2),
        "states_at_kill": _count(s for s, _ in before.values()),
        "states_after": _count(s for s, _ in after.values()),
        "stuck_pending": stuck,
        "process_disagrees": wrong,
        "stray_processes": strays,
        "projections_verify": await hub.verify(),
    }


async def _server_states(hub: FaultHub) -> dict[str, tuple[str, int | None]]:
    conn = await hub.connect_database()
    try:
        rows = await conn.fetch(SERVERS)
    finally:
        await conn.close()
    return {row["user_name"]: (row["state"], row["pid"]) for row in rows}


def _fake_servers(root: Path) -> dict[str, set[int]]:
    """The fake servers running from ``root``'s data directory, by user (from /proc)."""
    found: dict[str, set[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            if str(FAKE_SERVER).encode() not in cmdline:
                continue
            environ = dict(
                item.split("=", 1)
                for item in (entry / "environ").read_bytes().decode(errors="replace").split("\0")
                if "=" in item
            )
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if cwd.is_relative_to(root):
            found.setdefault(environ.get("JUPYTERHUB_USER", "?"), set()).add(int(entry.name))
    return found


def _count(states: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    return dict(sorted(counts.items()))


# --- webhooks ---------------------------------------------------------------------------------


async def webhook_kill(hub: FaultHub) -> dict[str, Any]:
    """A delivery in flight (the receiver holds it, unanswered) when the hub is killed: after
    the restart it is sent again, with the same delivery id, and so is everything after it."""
    created: list[str] = []

    async def create(name: str) -> None:
        status, body, _, _ = await hub.call("POST", f"/users/{name}")
        assert status == 201, body
        created.append(name)

    await create("hook-before")
    await wait_for(lambda: "hook-before" in hub.hooks.names, timeout_s=30)
    hub.hooks.holding = True
    await create("hook-held")
    await wait_for(lambda: bool(hub.hooks.held), timeout_s=30)
    await create("hook-queued")  # committed behind the held one
    killed = time.monotonic()
    restart_s = await hub.kill_and_restart()
    hub.hooks.holding = False
    hub.hooks.release.set()  # the dead hub's attempt is answered into the void
    await create("hook-after")
    with contextlib.suppress(AssertionError):
        await wait_for(lambda: set(created) <= set(hub.hooks.names), timeout_s=60, every_s=0.05)
    recovery = time.monotonic() - killed
    held_name, held_delivery = hub.hooks.held[0]
    sent = zip(hub.hooks.names, hub.hooks.deliveries, strict=True)
    resent = [delivery for name, delivery in sent if name == held_name]
    order = [n for n in hub.hooks.names if n in created]
    return {
        "acked_writes": len(created),
        "acked_lost": len(set(created) - set(hub.hooks.names)),
        "recovery_s": round(recovery, 2),
        "restart_s": round(restart_s, 2),
        "held_resent_same_id": resent == [held_delivery],
        "in_order": order == sorted(order, key=created.index),
        "deliveries": len(hub.hooks.deliveries),
        "duplicates": len(hub.hooks.deliveries) - len(set(hub.hooks.deliveries)),
    }


# --- a room's compaction ------------------------------------------------------------------------


async def compaction_kill(hub: FaultHub) -> dict[str, Any]:
    """A room edited past its compaction threshold while the test holds ``collab_snapshots``
    (SHARE mode): the compaction takes the room's log and blocks on inserting its snapshot,
    inside its transaction; more edits are made and acknowledged meanwhile, then the hub is
    killed and the lock let go. The restarted hub's room must hold every acknowledged edit:
    a participant's document equals the one acknowledged before the kill."""
    token = await _user_token(hub, "compactor")
    room = "faults-compaction"
    locker = await hub.connect_database()
    words: list[str] = []
    try:
        async with (
            collab_client.connect(_ws(hub), room, token=token) as editor,
            collab_client.connect(_ws(hub), room, token=token) as watcher,
        ):
            await asyncio.wait_for(editor.synced.wait(), 30)
            await asyncio.wait_for(watcher.synced.wait(), 30)
            text = editor.doc.get("t", type=pycrdt.Text)
            seen = watcher.doc.get("t", type=pycrdt.Text)

            async def edit(n: int) -> None:
                for _ in range(n):
                    word = f"w{len(words)}"
                    words.append(word)
                    text.insert(len(text), word + " ")
                    await editor.flushed()
                # acknowledged: broadcast to the other participant (persisted before that)
                expected = " ".join(words) + " "
                await wait_for(lambda: str(seen) == expected, timeout_s=30)

            await edit(3)  # the room exists before the lock
            transaction = locker.transaction()
            await transaction.start()
            await locker.execute("LOCK TABLE collab_snapshots IN SHARE MODE")
            await edit(COMPACT_AFTER + 5)
            blocked = True
            try:
                await wait_for(lambda: _blocked(hub), timeout_s=30, every_s=0.1)
            except AssertionError:
                blocked = False
            await edit(10)  # appended while the compaction waits, above its cut
            acknowledged = str(seen)
            killed = time.monotonic()
            hub.proc.kill()
            await hub.proc.wait()
            await transaction.rollback()
    finally:
        await locker.close()
    restart_s = await hub.kill_and_restart()
    token = await _user_token(hub, "compactor")
    async with collab_client.connect(_ws(hub), room, token=token) as reader:
        await asyncio.wait_for(reader.synced.wait(), 30)
        after = str(reader.doc.get("t", type=pycrdt.Text))
    recovery = time.monotonic() - killed
    lost = [w for w in acknowledged.split() if w not in after.split()]
    conn = await hub.connect_database()
    try:
        snapshots = await conn.fetchval(SNAPSHOTS, room)
    finally:
        await conn.close()
    return {
        "acked_writes": len(words),
        "acked_lost": len(lost),
        "recovery_s": round(recovery, 2),
        "restart_s": round(restart_s, 2),
        "killed_during_compaction": blocked,
        "document_equal": after == acknowledged,
        "snapshots_after": snapshots,
        "projections_verify": await hub.verify(),
    }


async def _blocked(hub: FaultHub) -> bool:
    conn = await hub.connect_database()
    try:
        return bool(await conn.fetchval(COMPACTION_BLOCKED))
    finally:
        await conn.close()


def _ws(hub: FaultHub) -> str:
    return hub.url.replace("http://", "ws://").rstrip("/") + "/hub"


async def _user_token(hub: FaultHub, name: str) -> str:
    """A new token of ``name``'s (created if need be)."""
    await hub.call("POST", f"/users/{name}")
    status, body, _, _ = await hub.call("POST", f"/users/{name}/tokens", json_body={})
    assert status == 201, body
    token: str = body["token"]
    return token


# --- a session's execution ------------------------------------------------------------------------

# Kernels run as the hub's own account (as a root hub's users' would run as theirs).
SESSION_SETTINGS = """
single_user_mode = true
single_user_mode_all_users = true
"""
# A cell that prints a numbered line every 50 ms for a while: the kill comes in the middle.
LONG_CELL = (
    "import time\nfor i in range(400):\n    print(f'line {i}', flush=True)\n    time.sleep(0.05)"
)


async def execution_kill(hub: FaultHub, lines_before_kill: int = 20) -> dict[str, Any]:
    """A shared session runs a long cell; once a participant has seen ``lines_before_kill``
    lines of its output (outputs are written to the room, persisted before they are
    broadcast), the hub is killed. After the restart, a new participant's room must hold every
    line the first one saw. The session's kernel dies with its hub or is left running: both
    are reported (``kernels_left_running``), not judged here."""
    token = await _user_token(hub, "runner")
    notebook = {
        "nbformat": 4, "nbformat_minor": 5, "metadata": {},
        "cells": [{"id": "c0", "cell_type": "code", "source": LONG_CELL, "metadata": {},
                   "outputs": [], "execution_count": None}],
    }  # fmt: skip
    status, created, _, _ = await hub.call(
        "POST", "/collab/sessions", token=token, json_body={"notebook": notebook}
    )
    assert status == 201, created
    room = created["room"]
    async with collab_client.connect(_ws(hub), room, token=token) as watcher:
        await asyncio.wait_for(watcher.synced.wait(), 30)
        status, body, _, _ = await hub.call(
            "POST", f"/collab/sessions/{created['id']}/execute", token=token,
            json_body={"cell_id": "c0"},
        )  # fmt: skip
        assert status == 202, body
        await wait_for(lambda: len(_output_lines(watcher.doc)) >= lines_before_kill, timeout_s=60)
        kernels = _kernels_under(hub.proc.pid)
        killed = time.monotonic()
        hub.proc.kill()
        await hub.proc.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watcher.wait_closed(), 10)
        seen = _output_lines(watcher.doc)  # every line broadcast before the kill
    restart_s = await hub.kill_and_restart()
    token = await _user_token(hub, "runner")
    async with collab_client.connect(_ws(hub), room, token=token) as reader:
        await asyncio.wait_for(reader.synced.wait(), 30)
        after = _output_lines(reader.doc)
    recovery = time.monotonic() - killed
    left = sorted(pid for pid in kernels if processes.exists(pid))
    for pid in left:  # not the test's to leave behind
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return {
        "acked_writes": len(seen),
        "acked_lost": len([line for line in seen if line not in set(after)]),
        "recovery_s": round(recovery, 2),
        "restart_s": round(restart_s, 2),
        "lines_after_restart": len(after),
        "kernels_at_kill": len(kernels),
        "kernels_left_running": len(left),
        "projections_verify": await hub.verify(),
    }


def _output_lines(doc: pycrdt.Doc[Any]) -> list[str]:
    """The lines of stream output of cell c0 in a room's notebook."""
    cells = doc.get("cells", type=pycrdt.Array).to_py() or []
    text = "".join(
        str(output.get("text", ""))
        for cell in cells
        if cell.get("id") == "c0"
        for output in cell.get("outputs", [])
    )
    return [line for line in text.split("\n") if line]


def _kernels_under(parent: int) -> list[int]:
    """The ipykernel processes among ``parent``'s descendants (from /proc)."""
    found, todo = [], [parent]
    while todo:
        for child in children(todo.pop()):
            todo.append(child)
            with contextlib.suppress(OSError):
                if b"ipykernel" in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.append(child)
    return found


# --- idempotent retries -----------------------------------------------------------------------


async def idempotent_kill(hub: FaultHub, writers: int = 4) -> dict[str, Any]:
    """Clients creating users, each request with its own ``Idempotency-Key``, retried with
    the same key until answered; the hub killed under them and started again. Every user is
    answered 201 once the retries get through (a retry of a committed request gets the first
    answer, not JupyterHub's 409 for an existing user) and created once in the log."""
    stop = asyncio.Event()
    answers: dict[str, list[int]] = {}

    async def writer(n: int) -> None:
        i = 0
        while not stop.is_set():
            name = f"idem-{n}-{i}"
            i += 1
            key = str(uuid.uuid4())
            statuses = answers.setdefault(name, [])
            while True:
                status, _, _, _ = await hub.call(
                    "POST", f"/users/{name}", headers={"Idempotency-Key": key}
                )
                statuses.append(status)
                if status not in (0, 503):
                    break
                await asyncio.sleep(0.05)  # retry shortly, as a client with backoff does

    tasks = [asyncio.create_task(writer(n)) for n in range(writers)]
    try:
        await wait_for(lambda: sum(1 for s in answers.values() if 201 in s) >= 30, timeout_s=60)
        killed, killed_at = time.monotonic(), time.time()
        restart_s = await hub.kill_and_restart()
        done = len(answers)
        await wait_for(lambda: len(answers) >= done + 10, timeout_s=60, every_s=0.05)
        recovery = time.monotonic() - killed
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    conn = await hub.connect_database()
    try:
        rows = await conn.fetch(
            "SELECT data->>'name' AS name, count(*) AS n,"
            " min(extract(epoch FROM recorded_at)) AS at FROM events"
            " WHERE event_type = 'user.created' AND data->>'name' LIKE 'idem-%' GROUP BY 1"
        )
        created = {row["name"]: row["n"] for row in rows}
        before_kill = {row["name"] for row in rows if row["at"] < killed_at}
    finally:
        await conn.close()
    retried = {name: s for name, s in answers.items() if len(s) > 1}
    final = {name: s[-1] for name, s in answers.items()}
    acked = [name for name, status in final.items() if status == 201]
    return {
        "acked_writes": len(acked),
        "acked_lost": sum(1 for name in acked if created.get(name, 0) < 1),
        "recovery_s": round(recovery, 2),
        "restart_s": round(restart_s, 2),
        "retried_requests": len(retried),
        # retried though their first attempt had committed before the kill: answered from
        # the key (the first answer), where a plain retry gets JupyterHub's 409
        "retries_of_committed_writes": sum(1 for name in retried if name in before_kill),
        "retries_answered_409": sum(1 for name in retried if final[name] == 409),
        "not_201": sorted(f"{n}: {s}" for n, s in final.items() if s != 201)[:10],
        "duplicate_events": sum(n - 1 for n in created.values() if n > 1),
        "projections_verify": await hub.verify(),
    }
