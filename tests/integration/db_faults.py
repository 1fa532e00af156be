"""Database faults on a real hub: ``chronohub serve`` on an embedded PostgreSQL of its own.

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
  user once (``stream_lost``, ``stream_duplicates``).

The hub's database is its own (not the test run's shared cluster), so stopping or killing it
touches nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pycrdt
from aiohttp import web

from collab import client as collab_client
from hub import embedded_db, startup
from tests.helpers import service_toml, wait_for
from tests.integration import git_client
from tests.integration.serve_process import SERVING

# The hub's bounds in these runs: short, so that a case takes seconds, not minutes.
ACQUIRE_TIMEOUT_S = 2.0
STATEMENT_TIMEOUT_S = 3.0
POOL_MAX = 10
# The longest a request may take: borrowing, one statement, then releasing its connection
# (asyncpg waits up to the borrow's limit for a cancelled statement), plus slack for this
# busy machine.
BOUND_S = ACQUIRE_TIMEOUT_S + STATEMENT_TIMEOUT_S + ACQUIRE_TIMEOUT_S + 2.0
TOKEN = "faults-operator-token-0123456789abcdef"
SCOPES = ["admin:users", "list:users", "tokens", "read:events"]
WEBHOOK = """
[[services]]
name = "hook"
webhook_url = "{url}"
webhook_events = ["user.created"]
webhook_secret = "faults-webhook-secret-0123456789"
"""
# How many updates a collab room has appended.
ROOM_UPDATES = "SELECT last_seq FROM collab_rooms WHERE room = $1"
# The hub's connections to its database (the pool's, and its LISTEN connections).
HUB_CONNECTIONS = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'chronohub'"


@dataclass
class Answer:
    """One request of the load: what it asked, how it was answered and how long it took."""

    kind: str  # "user", "token" or "list"
    name: str
    status: int  # 0: no answer (the client gave up or the connection broke)
    took_s: float
    retry_after: bool
    token: str | None = None


@dataclass
class Load:
    """Clients working the API until ``stop`` is set; what they were answered."""

    answers: list[Answer] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def succeeded(self, start: int = 0) -> int:
        """How many answers from the ``start``-th on were 2xx."""
        return sum(1 for a in self.answers[start:] if 200 <= a.status < 300)


class FaultHub:
    """A ``chronohub serve`` process on an embedded PostgreSQL in ``root``."""

    def __init__(
        self, root: Path, url: str, proc: asyncio.subprocess.Process, env: dict[str, str]
    ) -> None:
        self.root = root
        self.url = url
        self.proc = proc
        self.env = env
        self.session: aiohttp.ClientSession | None = None
        self.verify_output = ""
        self.hooks = Hooks()

    def log(self) -> str:
        """The hub's log so far."""
        return (self.root / "hub.log").read_text()

    # --- the database's processes ------------------------------------------------------------

    @property
    def pgdata(self) -> Path:
        return self.root / "state" / "postgres"

    def postmaster_pid(self) -> int | None:
        """The running postmaster's pid (None: not running)."""
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if embedded_db._alive(pid) else None

    def postgres_pids(self) -> list[int]:
        """The postmaster and its children."""
        postmaster = self.postmaster_pid()
        if postmaster is None:
            return []
        return [postmaster, *_children(postmaster)]

    def signal_database(self, sig: signal.Signals) -> None:
        for pid in self.postgres_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    async def connect_database(self) -> asyncpg.Connection[Any]:
        """A connection of the test's own to the hub's database (as its superuser)."""
        password = (self.root / "state" / embedded_db.PASSWORD_FILE).read_text().strip()
        lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        port, socket_dir = lines[3], lines[4]
        conn: asyncpg.Connection[Any] = await asyncpg.connect(
            host=socket_dir, port=int(port), user=embedded_db.SUPERUSER,
            password=password, database=embedded_db.DATABASE,
        )  # fmt: skip
        return conn

    async def kill_and_restart(self) -> float:
        """Kill the hub process (SIGKILL) and start another on the same data directory (it
        joins the embedded cluster, which runs on); the seconds until the new one serves."""
        killed = time.monotonic()
        self.proc.kill()
        await self.proc.wait()
        self.proc, self.url = await _start(self.root, self.env)
        return time.monotonic() - killed

    async def verify(self) -> bool:
        """``chronohub projections verify`` on the hub's database (joining its embedded
        cluster): the read models rebuilt from the log equal the live ones."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hub.cli", "projections", "verify",
            env=self.env, cwd=self.root,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await proc.communicate()
        self.verify_output = output.decode()
        return proc.returncode == 0

    # --- the API ----------------------------------------------------------------------------

    async def call(
        self, method: str, path: str, *, token: str = TOKEN, json_body: Any = None
    ) -> tuple[int, Any, float, bool]:
        """One API request: status (0 if none came), body, seconds taken, Retry-After given."""
        assert self.session is not None
        started = time.monotonic()
        try:
            async with self.session.request(
                method,
                f"{self.url}hub/api{path}",
                headers={"Authorization": f"token {token}"},
                json=json_body,
                timeout=aiohttp.ClientTimeout(total=60),
            ) as response:
                text = await response.text()
                try:
                    body = json.loads(text) if text else None
                except ValueError:
                    body = text
                return (
                    response.status,
                    body,
                    time.monotonic() - started,
                    "Retry-After" in response.headers,
                )
        except (aiohttp.ClientError, TimeoutError):
            return 0, None, time.monotonic() - started, False

    async def healthy(self) -> bool:
        """Whether ``/hub/health`` answers 200 and listing users works."""
        assert self.session is not None
        try:
            async with self.session.get(
                f"{self.url}hub/health", timeout=aiohttp.ClientTimeout(total=BOUND_S)
            ) as response:
                if response.status != 200:
                    return False
        except (aiohttp.ClientError, TimeoutError):
            return False
        status, _, _, _ = await self.call("GET", "/users?limit=1")
        return status == 200

    async def health(self) -> tuple[int, Any]:
        assert self.session is not None
        async with self.session.get(
            f"{self.url}hub/health", timeout=aiohttp.ClientTimeout(total=60)
        ) as response:
            return response.status, await response.json()

    # --- load ---------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def load(self, prefix: str, *, writers: int = 3, readers: int = 3) -> AsyncIterator[Load]:
        """Clients creating users and tokens (writers) and listing users (readers) until the
        block ends; the answers are the ``Load``'s."""
        load = Load()

        async def writer(n: int) -> None:
            i = 0
            while not load.stop.is_set():
                name = f"{prefix}-{n}-{i}"
                i += 1
                status, _, took, retry = await self.call("POST", f"/users/{name}")
                load.answers.append(Answer("user", name, status, took, retry))
                if status != 201:
                    continue
                status, body, took, retry = await self.call(
                    "POST", f"/users/{name}/tokens", json_body={"note": "faults"}
                )
                token = body.get("token") if status == 201 and isinstance(body, dict) else None
                load.answers.append(Answer("token", name, status, took, retry, token))

        async def reader() -> None:
            while not load.stop.is_set():
                status, _, took, retry = await self.call("GET", "/users?limit=20")
                load.answers.append(Answer("list", "", status, took, retry))

        tasks = [asyncio.create_task(writer(n)) for n in range(writers)]
        tasks += [asyncio.create_task(reader()) for _ in range(readers)]
        try:
            yield load
        finally:
            load.stop.set()
            await asyncio.gather(*tasks)

    async def lost(self, load: Load) -> list[str]:
        """The acknowledged writes of ``load`` missing now: users not found, tokens refused."""
        missing = []
        for answer in load.answers:
            if answer.kind == "user" and answer.status == 201:
                status, _, _, _ = await self.call("GET", f"/users/{answer.name}")
                if status != 200:
                    missing.append(f"user {answer.name}: {status}")
            elif answer.kind == "token" and answer.status == 201 and answer.token:
                status, body, _, _ = await self.call("GET", "/user", token=answer.token)
                if status != 200 or body.get("name") != answer.name:
                    missing.append(f"token of {answer.name}: {status}")
        return missing


@dataclass
class Stream:
    """An audit stream following ``user.created``, resumed with ``Last-Event-ID`` when cut."""

    names: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    reconnects: int = 0


async def follow(hub: FaultHub, stream: Stream, stop: asyncio.Event) -> None:
    """Read the stream into ``stream`` until ``stop``; reconnect from the last id if cut."""
    assert hub.session is not None
    last_id: str | None = None
    while not stop.is_set():
        headers = {"Authorization": f"token {TOKEN}"}
        if last_id is not None:
            headers["Last-Event-ID"] = last_id
        try:
            async with hub.session.get(
                f"{hub.url}hub/api/events/stream?type=user.created",
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
            ) as response:
                if response.status != 200:
                    await asyncio.sleep(0.2)  # the outage: try again shortly, as EventSource does
                    stream.reconnects += 1
                    continue
                event_id = None
                async for raw in response.content:
                    line = raw.decode().rstrip("\n")
                    if line.startswith("id: "):
                        event_id = line[4:]
                    elif line.startswith("data: "):
                        data = json.loads(line[6:])
                        stream.names.append(data["data"]["name"])
                        assert event_id is not None
                        stream.ids.append(event_id)
                        last_id = event_id
        except (aiohttp.ClientError, TimeoutError):
            pass
        stream.reconnects += 1
        if not stop.is_set():
            await asyncio.sleep(0.2)  # a cut stream: reconnect shortly, as EventSource does


@contextlib.asynccontextmanager
async def following(hub: FaultHub) -> AsyncIterator[Stream]:
    stream = Stream()
    stop = asyncio.Event()
    task = asyncio.create_task(follow(hub, stream, stop))
    try:
        yield stream
    finally:
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def watching_health(hub: FaultHub) -> AsyncIterator[list[tuple[int, str]]]:
    """``/hub/health`` asked every half second while the block runs: (status, database)."""
    seen: list[tuple[int, str]] = []
    stop = asyncio.Event()

    async def watch() -> None:
        assert hub.session is not None
        while not stop.is_set():
            try:
                async with hub.session.get(
                    f"{hub.url}hub/health", timeout=aiohttp.ClientTimeout(total=BOUND_S)
                ) as response:
                    body = await response.json()
                    seen.append((response.status, body.get("database", "")))
            except (aiohttp.ClientError, TimeoutError, ValueError):
                seen.append((0, ""))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    task = asyncio.create_task(watch())
    try:
        yield seen
    finally:
        stop.set()
        await task


async def stream_caught_up(hub: FaultHub, stream: Stream, load: Load) -> None:
    """Wait (30 s at most each: a loss is reported, not raised) until the stream and the
    webhook have seen every user that ``load`` created."""
    acked = {a.name for a in load.answers if a.kind == "user" and a.status == 201}
    with contextlib.suppress(AssertionError):
        await wait_for(lambda: acked <= set(stream.names), timeout_s=30)
    with contextlib.suppress(AssertionError):
        await wait_for(lambda: acked <= set(hub.hooks.names), timeout_s=30)


async def api_ok(hub: FaultHub) -> bool:
    """Whether listing users answers 200."""
    status, _, _, _ = await hub.call("GET", "/users?limit=1")
    return status == 200


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


# --- the cases --------------------------------------------------------------------------------


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
        await wait_for(lambda: _health_ok(hub), timeout_s=30, every_s=0.1)
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


async def _health_ok(hub: FaultHub) -> bool:
    status, _ = await hub.health()
    return status == 200


CASES = {
    "stall": stall,
    "postmaster_kill": postmaster_kill,
    "slow": slow,
    "disk_full": disk_full,
    "hub_kill": hub_kill,
    "push_kill": push_kill,
    "room_stall": room_stall,
}


async def run_all() -> dict[str, Any]:
    """Every case, each on a fresh hub; one summary."""
    results: dict[str, Any] = {}
    for name, case in CASES.items():
        with reachable_dir() as root:
            async with fault_hub(root) as hub:
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


@dataclass
class Hooks:
    """What the webhook receiver was sent: user.created events, by user and by delivery id."""

    names: list[str] = field(default_factory=list)
    deliveries: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def webhook_receiver() -> AsyncIterator[tuple[str, Hooks]]:
    """A receiver on a free loopback port: its URL, and what it was sent."""
    hooks = Hooks()

    async def receive(request: web.Request) -> web.Response:
        event = await request.json()
        hooks.names.append(event["data"]["name"])
        hooks.deliveries.append(request.headers["X-Chronohub-Delivery"])
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = startup.free_port("127.0.0.1")
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}/hook", hooks
    finally:
        await runner.cleanup()


# --- the hub ----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def fault_hub(root: Path) -> AsyncIterator[FaultHub]:
    """``chronohub serve`` with its own embedded PostgreSQL in ``root`` (which other accounts
    may pass through: a root hub's database runs as its own account)."""
    async with webhook_receiver() as (hook_url, hooks), _serve(root, hook_url) as hub:
        hub.hooks = hooks
        yield hub


@contextlib.asynccontextmanager
async def _serve(root: Path, hook_url: str) -> AsyncIterator[FaultHub]:
    config = root / "chronohub.toml"
    config.write_text(service_toml(TOKEN, SCOPES) + WEBHOOK.format(url=hook_url))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CHRONOHUB_", "PG")) and k != "DATABASE_URL"
    } | {
        "CHRONOHUB_CONFIG": str(config),
        "CHRONOHUB_DATA_DIR": str(root / "state"),
        "CHRONOHUB_EMBEDDED_DB_PORT": str(startup.free_port("127.0.0.1")),
        "CHRONOHUB_DB_ACQUIRE_TIMEOUT": str(ACQUIRE_TIMEOUT_S),
        "CHRONOHUB_DB_STATEMENT_TIMEOUT": str(STATEMENT_TIMEOUT_S),
        "CHRONOHUB_DB_POOL_MAX": str(POOL_MAX),
    }
    proc, url = await _start(root, env)
    hub = FaultHub(root, url, proc, env)
    try:
        async with aiohttp.ClientSession() as session:
            hub.session = session
            yield hub
    finally:
        hub.signal_database(signal.SIGCONT)  # never leave it stopped
        proc = hub.proc
        if proc.returncode is None:
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 60)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        # The hub stopped its cluster on exit; make sure of it, whatever happened.
        embedded_db.EmbeddedPostgres(root / "state").remove()


async def _start(root: Path, env: dict[str, str]) -> tuple[asyncio.subprocess.Process, str]:
    """Start ``chronohub serve`` (its log appended to ``root / "hub.log"``); the process and
    its public URL once it serves."""
    log_path = root / "hub.log"
    with open(log_path, "ab") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hub.cli", "serve",
            "--ip", "127.0.0.1", "--port", "0", "--hub-port", "0",
            env=env, cwd=root, stdout=asyncio.subprocess.PIPE, stderr=log,
        )  # fmt: skip
    assert proc.stdout is not None
    try:
        first = (await asyncio.wait_for(proc.stdout.readline(), 120)).decode()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    match = SERVING.match(first)
    if not match:
        proc.kill()
        await proc.wait()
        raise AssertionError(first + log_path.read_text())
    return proc, match[1]


@contextlib.contextmanager
def reachable_dir() -> Iterator[Path]:
    """A temporary directory other accounts may pass through (the database's account must)."""
    path = Path(tempfile.mkdtemp(prefix="chronohub-faults-"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _children(parent: int) -> list[int]:
    """The pids whose parent is ``parent`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == parent:
            found.append(int(entry.name))
    return found


if __name__ == "__main__":
    main()
