"""Faults on a real hub: ``chronohub serve`` on an embedded PostgreSQL of its own
(``fault_hub``, the harness).

The tests (``test_db_faults.py``) and ``make faults`` (``python -m tests.integration.db_faults``,
one JSON line) run the same cases. Each case puts API clients to work on the hub (creating
users, creating tokens, listing users; an audit stream following ``user.created``), does
something to the database's processes, and measures:

* ``acked_lost``: writes answered 2xx that are missing afterwards (a user, a token);
* ``recovery_s``: from the database's return (or the fault, where the hub itself must bring
  it back) until the API answers normally again;
* every answer is a 2xx or a 503 with ``Retry-After`` (``bad_answers`` counts the others) and
  none took longer than the hub's bound (``slowest_s``);
* the audit stream, resumed with ``Last-Event-ID`` whenever it is cut, saw each acknowledged
  user once (``stream_lost``, ``stream_duplicates``), and the webhook got each
  (``webhook_lost``);
* ``chronohub projections verify`` passes afterwards.

The cases: ``stall``, ``postmaster_kill``, ``slow``, ``disk_full`` (the database), ``hub_kill``
and ``push_kill`` (the hub process killed under API writes, under git pushes) and
``room_stall`` (a collab room edited through a stall); and ``kill_faults``'s, the hub killed
during spawns, a room's compaction, a session's execution, a webhook delivery and idempotent
API writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pycrdt

from collab import client as collab_client
from hub import embedded_db
from tests.helpers import wait_for
from tests.integration import git_client, kill_faults
from tests.integration.fault_hub import (
    ACQUIRE_TIMEOUT_S,
    BOUND_S,
    HUB_CONNECTIONS,
    ROOM_UPDATES,
    STATEMENT_TIMEOUT_S,
    Answer,
    FaultHub,
    Load,
    Stream,
    api_ok,
    fault_hub,
    following,
    health_ok,
    reachable_dir,
    stream_caught_up,
    watching_health,
)


async def report(
    hub: FaultHub, load: Load, stream: Stream | None, recovery_s: float, **extra: Any
) -> dict[str, Any]:
    """The case's figures (see the module's docstring)."""
    lost = await hub.lost(load)
    verified = await hub.verify()
    bad = [
        a
        for a in load.answers
        if not (200 <= a.status < 300 or (a.status == 503 and a.retry_after))
    ]
    acked = [a for a in load.answers if a.kind in ("user", "token") and a.status == 201]
    result: dict[str, Any] = {
        "acked_writes": len(acked),
        "acked_lost": len(lost),
        "recovery_s": round(recovery_s, 2),
        "answers": len(load.answers),
        "answered_503": sum(1 for a in load.answers if a.status == 503),
        "bad_answers": len(bad),
        "slowest_s": round(max(a.took_s for a in load.answers), 2),
        "projections_verify": verified,
        **extra,
    }
    if lost:
        result["lost"] = lost[:10]
    if not verified:
        result["verify_output"] = hub.verify_output[-2000:]
    if bad:
        result["bad"] = [f"{a.kind} {a.name}: {a.status} in {a.took_s:.1f} s" for a in bad[:10]]
    if stream is not None:
        users = {a.name for a in load.answers if a.kind == "user" and a.status == 201}
        result["stream_lost"] = len(users - set(stream.names))
        result["stream_duplicates"] = len(stream.ids) - len(set(stream.ids))
        result["stream_reconnects"] = stream.reconnects
        result["webhook_lost"] = len(users - set(hub.hooks.names))
        # at least once: a delivery answered 2xx whose checkpoint could not be written (the
        # database went away between the two) is sent again, with the same delivery id
        result["webhook_resent"] = len(hub.hooks.deliveries) - len(set(hub.hooks.deliveries))
    return result


async def stall(hub: FaultHub, seconds: float = 8.0) -> dict[str, Any]:
    """Every PostgreSQL process stopped (SIGSTOP) for ``seconds`` under load, then continued:
    recovery is counted from SIGCONT."""
    async with following(hub) as stream:
        async with hub.load("stall") as load:
            await wait_for(lambda: load.succeeded() >= 5, timeout_s=30)
            async with watching_health(hub) as health:
                hub.signal_database(signal.SIGSTOP)
                # The outage lasts ``seconds``: the case's definition, not a wait for a
                # condition.
                await asyncio.sleep(seconds)
                hub.signal_database(signal.SIGCONT)
            back = time.monotonic()
            await wait_for(lambda: api_ok(hub), timeout_s=30, every_s=0.05)
            recovery = time.monotonic() - back
            after = len(load.answers)
            await wait_for(lambda: load.succeeded(after) >= 5, timeout_s=30)
        await stream_caught_up(hub, stream, load)
    return await report(
        hub, load, stream, recovery, stalled_s=seconds, health_during=_statuses(health)
    )


async def postmaster_kill(hub: FaultHub) -> dict[str, Any]:
    """The postmaster killed (SIGKILL) under load: the hub restarts it; recovery is counted
    from the kill."""
    async with following(hub) as stream:
        async with hub.load("kill") as load:
            await wait_for(lambda: load.succeeded() >= 5, timeout_s=30)
            old = hub.postmaster_pid()
            assert old is not None
            # health is watched until the API answers again, not only until the postmaster
            # is back: the hub may notice the outage only as the new one starts
            async with watching_health(hub) as health:
                os.kill(old, signal.SIGKILL)
                killed = time.monotonic()
                await wait_for(lambda: hub.postmaster_pid() not in (None, old), timeout_s=60)
                restarted = time.monotonic() - killed
                await wait_for(lambda: api_ok(hub), timeout_s=60, every_s=0.05)
                recovery = time.monotonic() - killed
            after = len(load.answers)
            await wait_for(lambda: load.succeeded(after) >= 5, timeout_s=30)
        await stream_caught_up(hub, stream, load)
    return await report(
        hub, load, stream, recovery,
        restarted_s=round(restarted, 2), health_during=_statuses(health),
    )  # fmt: skip


async def slow(hub: FaultHub, seconds: float = 6.0) -> dict[str, Any]:
    """A slow database: the users table locked (ACCESS EXCLUSIVE) for ``seconds`` by another
    session while more clients than the pool has connections read and write it. Requests
    answer 503 within the bound, the pool does not grow past its size, ``/hub/health`` says
    degraded; recovery is counted from the lock's release."""
    locker = await hub.connect_database()
    watcher = await hub.connect_database()
    try:
        async with hub.load("slow", writers=4, readers=12) as load:
            await wait_for(lambda: load.succeeded() >= 5, timeout_s=30)
            transaction = locker.transaction()
            await transaction.start()
            await locker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            locked = time.monotonic()
            peak = 0
            health: set[int] = set()
            reasons: set[str] = set()
            # The slowness lasts ``seconds``: watched meanwhile, not waited on.
            while time.monotonic() - locked < seconds:
                peak = max(peak, await watcher.fetchval(HUB_CONNECTIONS))
                if time.monotonic() - locked > STATEMENT_TIMEOUT_S:
                    status, body = await hub.health()
                    health.add(status)
                    if status == 503:
                        reasons.add(body["database"])
                await asyncio.sleep(0.2)
            await transaction.rollback()
            back = time.monotonic()
            await wait_for(lambda: api_ok(hub), timeout_s=30, every_s=0.05)
            recovery = time.monotonic() - back
            after = len(load.answers)
            await wait_for(lambda: load.succeeded(after) >= 5, timeout_s=30)
        await wait_for(lambda: health_ok(hub), timeout_s=30, every_s=0.1)
    finally:
        await locker.close()
        await watcher.close()
    return await report(
        hub, load, None, recovery,
        slow_s=seconds, peak_connections=peak, health_during=sorted(health),
        degraded_as=sorted(reasons),
    )  # fmt: skip


def _statuses(health: list[tuple[int, str]]) -> list[str]:
    """The distinct answers of ``/hub/health`` as ``status:database``."""
    return sorted({f"{status}:{database}" for status, database in health})


def _unavailable(answer: Answer) -> bool:
    return answer.status == 503 and answer.retry_after


async def hub_kill(hub: FaultHub) -> dict[str, Any]:
    """The hub process killed (SIGKILL) under load, then started again: every write answered
    2xx before the kill is there after it. Requests to the dead process get no answer (not
    counted as bad: nothing answers them); recovery is counted from the kill until the new
    process lists users."""
    async with hub.load("hubkill") as load:
        await wait_for(lambda: load.succeeded() >= 30, timeout_s=60)
        killed = time.monotonic()
        started_s = await hub.kill_and_restart()
        await wait_for(lambda: api_ok(hub), timeout_s=60, every_s=0.05)
        recovery = time.monotonic() - killed
        after = len(load.answers)
        await wait_for(lambda: load.succeeded(after) >= 5, timeout_s=30)
    unanswered = sum(1 for a in load.answers if a.status == 0)
    load.answers = [a for a in load.answers if a.status != 0]
    return await report(
        hub, load, None, recovery, restart_s=round(started_s, 2), unanswered=unanswered
    )


async def push_kill(hub: FaultHub) -> dict[str, Any]:
    """The hub process killed (SIGKILL) while the real git CLI pushes to a project, commit
    after commit, then started again: every push git reported done is in the project's
    branch after, and the refs and the ``project.pushed`` events agree (each push's old is the
    previous one's new; the last one's new is the branch), so no push is half written."""
    await hub.call("POST", "/users/pusher")
    status, body, _, _ = await hub.call("POST", "/users/pusher/tokens", json_body={})
    assert status == 201, body
    token = body["token"]
    status, body, _, _ = await hub.call(
        "POST", "/projects", token=token, json_body={"name": "repo"}
    )
    assert status == 201, body
    git = git_client.Git(hub.root / "git-home")
    work = hub.root / "work"
    await git.ok("init", "-q", "-b", "main", str(work))
    acked: list[str] = []
    failed = 0
    stop = asyncio.Event()

    def remote() -> str:
        return hub.url.replace("http://", f"http://pusher:{token}@") + "hub/git/pusher/repo.git"

    async def pusher() -> None:
        nonlocal failed
        n = 0
        while not stop.is_set():
            n += 1
            # some weight, so that a push is still under way when the kill comes
            (work / f"f{n}.bin").write_bytes(os.urandom(512 * 1024))
            await git.ok("add", ".", cwd=work)
            await git.ok("commit", "-qm", f"commit {n}", cwd=work)
            sha = (await git.ok("rev-parse", "HEAD", cwd=work)).out.strip()
            pushed = await git("push", "-q", remote(), "main", cwd=work, timeout=60)
            if pushed.code == 0:
                acked.append(sha)
            else:
                failed += 1

    task = asyncio.create_task(pusher())
    try:
        await wait_for(lambda: len(acked) >= 3, timeout_s=60)
        killed = time.monotonic()
        restart_s = await hub.kill_and_restart()
        before = len(acked)
        await wait_for(lambda: len(acked) >= before + 2, timeout_s=60, every_s=0.05)
        recovery = time.monotonic() - killed
    finally:
        stop.set()
        await task
    head = (await git.ok("ls-remote", remote(), "refs/heads/main")).out.split()[0]
    lost = [
        sha
        for sha in acked
        if (await git("merge-base", "--is-ancestor", sha, head, cwd=work)).code != 0
    ]
    status, events, _, _ = await hub.call("GET", "/events?type=project.pushed&limit=1000")
    assert status == 200, events
    chain = [
        (ref["old"], ref["new"])
        for event in events
        for ref in event["data"]["refs"]
        if ref["ref"] == "refs/heads/main"
    ]
    linked = all(chain[i][0] == chain[i - 1][1] for i in range(1, len(chain)))
    pushes = [new for _, new in chain]
    return {
        "acked_writes": len(acked),
        "acked_lost": len(lost),
        "recovery_s": round(recovery, 2),
        "restart_s": round(restart_s, 2),
        "failed_pushes": failed,
        "refs_agree_with_events": bool(chain) and chain[-1][1] == head and linked,
        "duplicate_push_events": len(pushes) - len(set(pushes)),
        "projections_verify": await hub.verify(),
    }


async def room_stall(hub: FaultHub, seconds: float = 8.0) -> dict[str, Any]:
    """A collab room edited before, during and after the database's stall (SIGSTOP): the
    edits made while it was stopped are kept and appended once it is back, so a hub started
    afresh (the room reopened from the database) has every one. ``acked_lost`` counts the
    edits missing then; recovery is counted from SIGCONT until the room's updates are
    written (a new participant of the restarted hub sees them all)."""
    await hub.call("POST", "/users/roomer")
    status, body, _, _ = await hub.call("POST", "/users/roomer/tokens", json_body={})
    assert status == 201, body
    token = body["token"]

    def base() -> str:
        return hub.url.replace("http://", "ws://").rstrip("/") + "/hub"

    words = ["before", "during", "after"]
    async with collab_client.connect(base(), "faults-room", token=token) as editor:
        await asyncio.wait_for(editor.synced.wait(), 30)
        text = editor.doc.get("t", type=pycrdt.Text)
        text += words[0] + " "
        await editor.flushed()
        hub.signal_database(signal.SIGSTOP)
        text += words[1] + " "
        await editor.flushed()
        # The outage lasts ``seconds``: the case's definition, not a wait for a condition.
        await asyncio.sleep(seconds)
        hub.signal_database(signal.SIGCONT)
        back = time.monotonic()
        closed = editor.close_code
        if closed is None:
            text += words[2]
            await editor.flushed()
    expected = " ".join(words) if closed is None else words[0] + " " + words[1] + " "
    edits = len(expected.split())

    async def persisted() -> bool:
        # What the database holds for the room: read by a participant of a hub started
        # afresh is the proof, but a restart per poll is slow; first wait for the log here.
        conn = await hub.connect_database()
        try:
            return (await conn.fetchval(ROOM_UPDATES, "faults-room") or 0) >= edits
        finally:
            await conn.close()

    await wait_for(persisted, timeout_s=30)
    recovery = time.monotonic() - back
    await hub.kill_and_restart()
    async with collab_client.connect(base(), "faults-room", token=token) as reader:
        await asyncio.wait_for(reader.synced.wait(), 30)
        seen = str(reader.doc.get("t", type=pycrdt.Text))
    lost = [w for w in expected.split() if w not in seen.split()]
    return {
        "acked_writes": len(expected.split()),
        "acked_lost": len(lost),
        "recovery_s": round(recovery, 2),
        "closed_during_outage": closed,
        "text_after_restart": seen,
    }


class CannotFill(Exception):
    """The disk-full case needs root (to mount a small tmpfs), which this run has not."""


async def disk_full(hub: FaultHub, size: str = "4m") -> dict[str, Any]:
    """The event log's disk full: the ``events`` table moved to a tablespace on a small tmpfs,
    which is then filled. Appends are refused with 503 (PostgreSQL's disk-full error), reads
    are served, and appends work again once space returns; recovery is counted from then."""
    if os.geteuid() != 0:
        raise CannotFill("mounting a tmpfs needs root")
    mount = hub.root / "small-disk"
    mount.mkdir()
    mounted = await _run(
        "mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mount)
    )
    if not mounted:
        raise CannotFill(f"could not mount a tmpfs on {mount}")
    conn = await hub.connect_database()
    filler = mount / "filler"
    try:
        account = embedded_db.database_account()
        if account is not None:
            os.chown(mount, account.uid, account.gid)
        # A utility statement takes no parameters; the path is the test's own.
        await conn.execute(f"CREATE TABLESPACE small_disk LOCATION '{mount}'")
        await conn.execute("ALTER TABLE events SET TABLESPACE small_disk")
        async with hub.load("full", writers=3, readers=3) as load:
            await wait_for(lambda: load.succeeded() >= 5, timeout_s=30)
            await asyncio.to_thread(_fill, filler)
            full = len(load.answers)
            await wait_for(lambda: _refused_writes(load, full) >= 10, timeout_s=60)
            # reads keep being served while the disk is full
            reads = len(load.answers)
            await wait_for(lambda: _served_reads(load, reads) >= 10, timeout_s=30)
            writes_while_full = [
                a for a in load.answers[full:] if a.kind == "user" and a.status == 201
            ]
            filler.unlink()
            freed = time.monotonic()
            after = len(load.answers)
            await wait_for(
                lambda: any(a.kind == "user" and a.status == 201 for a in load.answers[after:]),
                timeout_s=30,
                every_s=0.05,
            )
            recovery = time.monotonic() - freed
        logged = "DiskFullError" in hub.log()
        result = await report(
            hub, load, None, recovery,
            refused_writes=_refused_writes(load, full), served_reads=_served_reads(load, reads),
            writes_acked_while_full=len(writes_while_full), disk_full_logged=logged,
        )  # fmt: skip
        await conn.execute("ALTER TABLE events SET TABLESPACE pg_default")
        await conn.execute("DROP TABLESPACE small_disk")
        return result
    finally:
        filler.unlink(missing_ok=True)
        await conn.close()
        await _run("umount", "-l", str(mount))


def _refused_writes(load: Load, start: int) -> int:
    return sum(1 for a in load.answers[start:] if a.kind == "user" and a.status == 503)


def _served_reads(load: Load, start: int) -> int:
    return sum(1 for a in load.answers[start:] if a.kind == "list" and a.status == 200)


def _fill(path: Path) -> None:
    """Write ``path`` until its file system is full (ENOSPC), in ever smaller pieces."""
    out = open(path, "wb", buffering=0)  # noqa: SIM115 - closed below, where ENOSPC may come
    try:
        for piece in (1 << 20, 1 << 16, 1 << 12):
            block = b"\0" * piece
            with contextlib.suppress(OSError):
                while True:
                    out.write(block)
    finally:
        with contextlib.suppress(OSError):
            out.close()


async def _run(*args: str) -> bool:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    return await proc.wait() == 0


CASES = {
    "stall": stall,
    "postmaster_kill": postmaster_kill,
    "slow": slow,
    "disk_full": disk_full,
    "hub_kill": hub_kill,
    "push_kill": push_kill,
    "room_stall": room_stall,
    "spawn_kill": kill_faults.spawn_kill,
    "compaction_kill": kill_faults.compaction_kill,
    "execution_kill": kill_faults.execution_kill,
    "webhook_kill": kill_faults.webhook_kill,
    "idempotent_kill": kill_faults.idempotent_kill,
}
# What a case's hub needs beyond the harness's configuration.
HUB_OPTIONS: dict[str, dict[str, Any]] = {
    "spawn_kill": {"settings": kill_faults.SPAWN_SETTINGS},
    "compaction_kill": {"env": kill_faults.COMPACTION_ENV},
    "execution_kill": {"settings": kill_faults.SESSION_SETTINGS},
}


async def run_all() -> dict[str, Any]:
    """Every case, each on a fresh hub; one summary."""
    results: dict[str, Any] = {}
    for name, case in CASES.items():
        with reachable_dir() as root:
            async with fault_hub(root, **HUB_OPTIONS.get(name, {})) as hub:
                try:
                    results[name] = await case(hub)
                except CannotFill as exc:
                    results[name] = {"skipped": str(exc), "acked_lost": 0}
    return {
        "cases": results,
        "acked_lost_total": sum(r["acked_lost"] for r in results.values()),
        "bounds": {
            "db_acquire_timeout": ACQUIRE_TIMEOUT_S,
            "db_statement_timeout": STATEMENT_TIMEOUT_S,
            "request_bound_s": BOUND_S,
        },
    }


def main() -> None:
    """``make faults``: one JSON line."""
    print(json.dumps(asyncio.run(run_all())), flush=True)


if __name__ == "__main__":
    main()
