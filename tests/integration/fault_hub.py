"""The harness of the fault cases (``db_faults``): a ``chronohub serve`` on an embedded
PostgreSQL of its own (so stopping or killing its database touches nothing else), clients
working its API, an audit stream and a webhook receiver following it, and ways to signal its
database's processes or kill and restart the hub."""

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
from aiohttp import web

from hub import embedded_db
from tests import ports
from tests.helpers import service_toml, wait_for
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
SCOPES = ["admin:users", "list:users", "tokens", "read:events", "admin:servers"]
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
        return [postmaster, *children(postmaster)]

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
        joins the embedded cluster, which runs on); the seconds until the new one serves.
        A hub already killed (by the case, at its moment) is only started again."""
        killed = time.monotonic()
        if self.proc.returncode is None:
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
        self,
        method: str,
        path: str,
        *,
        token: str = TOKEN,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, float, bool]:
        """One API request: status (0 if none came), body, seconds taken, Retry-After given."""
        assert self.session is not None
        started = time.monotonic()
        try:
            async with self.session.request(
                method,
                f"{self.url}hub/api{path}",
                headers={"Authorization": f"token {token}", **(headers or {})},
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
    """``/hub/health`` asked every fifth of a second while the block runs: (status,
    database)."""
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
                await asyncio.wait_for(stop.wait(), 0.2)

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


async def health_ok(hub: FaultHub) -> bool:
    status, _ = await hub.health()
    return status == 200


@dataclass
class Hooks:
    """What the webhook receiver was sent: user.created events, by user and by delivery id,
    answered 2xx. While ``holding``, a delivery is kept waiting until ``release`` is set, then
    answered 503 (``held``: what arrived so)."""

    names: list[str] = field(default_factory=list)
    deliveries: list[str] = field(default_factory=list)
    holding: bool = False
    release: asyncio.Event = field(default_factory=asyncio.Event)
    held: list[tuple[str, str]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def webhook_receiver() -> AsyncIterator[tuple[str, Hooks]]:
    """A receiver on a free loopback port: its URL, and what it was sent."""
    hooks = Hooks()

    async def receive(request: web.Request) -> web.Response:
        event = await request.json()
        name, delivery = event["data"]["name"], request.headers["X-Chronohub-Delivery"]
        if hooks.holding:
            hooks.held.append((name, delivery))
            await hooks.release.wait()
            return web.Response(status=503)
        hooks.names.append(name)
        hooks.deliveries.append(delivery)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = ports.free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}/hook", hooks
    finally:
        hooks.release.set()  # no delivery left waiting
        await runner.cleanup()


@contextlib.asynccontextmanager
async def fault_hub(
    root: Path, *, settings: str = "", env: dict[str, str] | None = None
) -> AsyncIterator[FaultHub]:
    """``chronohub serve`` with its own embedded PostgreSQL in ``root`` (which other accounts
    may pass through: a root hub's database runs as its own account); ``settings`` are more
    top-level TOML lines of its configuration, ``env`` more of its environment."""
    async with (
        webhook_receiver() as (hook_url, hooks),
        _serve(root, hook_url, settings, env or {}) as hub,
    ):
        hub.hooks = hooks
        yield hub


@contextlib.asynccontextmanager
async def _serve(
    root: Path, hook_url: str, settings: str, extra_env: dict[str, str]
) -> AsyncIterator[FaultHub]:
    config = root / "chronohub.toml"
    # top-level keys before the tables ([[services]]), as TOML wants
    config.write_text(settings + "\n" + service_toml(TOKEN, SCOPES) + WEBHOOK.format(url=hook_url))
    env = (
        {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CHRONOHUB_", "PG")) and k != "DATABASE_URL"
        }
        | {
            "CHRONOHUB_CONFIG": str(config),
            "CHRONOHUB_DATA_DIR": str(root / "state"),
            "CHRONOHUB_EMBEDDED_DB_PORT": str(ports.free_port()),
            "CHRONOHUB_DB_ACQUIRE_TIMEOUT": str(ACQUIRE_TIMEOUT_S),
            "CHRONOHUB_DB_STATEMENT_TIMEOUT": str(STATEMENT_TIMEOUT_S),
            "CHRONOHUB_DB_POOL_MAX": str(POOL_MAX),
        }
        | extra_env
    )
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


def children(parent: int) -> list[int]:
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
