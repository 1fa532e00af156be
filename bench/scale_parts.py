"""The parts of ``make bench-scale`` (``bench/scale.py``), one function each: the log filled,
the hub's process watched, users and groups made, the API under load, rooms, clones and the
log's own figures. The orchestration, targets and report are in ``bench/scale.py``."""

from __future__ import annotations

import asyncio
import gc
import os
import random
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Iterable
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import aiohttp
import asyncpg
import pycrdt

import events.catalog  # noqa: F401 - registers the hub's events
from bench import common, git_http, rest_api
from collab import protocol
from events import models, sql, store
from events.catalog import users as user_events
from hub import database, settings
from projections import base, catalog, rebuild, snapshots, users

queries = sql.Queries("bench", "scale.sql")
FILL_CHUNK = 50_000  # events per INSERT statement: many transaction ids, no huge one
JOIN_TIMEOUT = 60.0  # seconds for a room's clients all to join
OPENING = 50  # rooms being opened at once
DRIVER_GC_YOUNG_THRESHOLD = 10_000  # the rooms part's, as the hub's (hub/app.py)
T = TypeVar("T")


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def percentiles(latencies: list[float], prefix: str) -> dict[str, float | None]:
    """``<prefix>_p50_ms`` and ``<prefix>_p99_ms`` of ``latencies`` (seconds)."""
    if not latencies:
        return {f"{prefix}_p50_ms": None, f"{prefix}_p99_ms": None}
    ordered = sorted(latencies)
    return {
        f"{prefix}_p50_ms": ms(common.quantile(ordered, 0.50)),
        f"{prefix}_p99_ms": ms(common.quantile(ordered, 0.99)),
    }


async def bounded(jobs: Iterable[Awaitable[T]], limit: int) -> list[T]:
    """Await ``jobs`` with at most ``limit`` in flight; their results in order."""
    gate = asyncio.Semaphore(limit)

    async def one(job: Awaitable[T]) -> T:
        async with gate:
            return await job

    return await asyncio.gather(*(one(job) for job in jobs))


# --- the log -------------------------------------------------------------------------------


def user_name(u: int) -> str:
    return f"u{u:05d}"


async def fill_log(dsn: str, total: int, users_count: int) -> dict[str, Any]:
    """About ``total`` user events straight into the log by ``generate_series`` (``user.created``
    for ``users_count`` users, then an even number of ``user.admin_changed`` rounds over them,
    interleaved), then the users read model rebuilt over them: the hub then stands on a log and
    read models that agree, as if it had lived through those events."""
    rounds = max(2, (total - users_count) // users_count)
    rounds -= rounds % 2  # an even number: every user ends as created (not an admin)
    conn = await asyncpg.connect(dsn)
    start = time.perf_counter()
    try:
        constraints = await conn.fetch(queries["event_unique_constraints"])
        indexes = await conn.fetch(queries["event_plain_indexes"])
        # DDL from the catalog's own definitions of the migrated schema (no user input): the
        # log ends with exactly the indexes and constraints the migrations gave it.
        for row in constraints:
            await conn.execute(f'ALTER TABLE events DROP CONSTRAINT "{row["name"]}"')
        for row in indexes:
            await conn.execute(f'DROP INDEX "{row["name"]}"')
        for u in range(0, users_count, FILL_CHUNK):
            await conn.execute(queries["fill_users_created"], u, min(u + FILL_CHUNK, users_count))
        step = max(1, FILL_CHUNK // users_count)
        for k in range(1, rounds + 1, step):
            await conn.execute(
                queries["fill_admin_changed"], k, min(k + step, rounds + 1), users_count
            )
            done = k + step - 1
            if done % max(step, rounds // 10) < step:
                common.log(f"  log: {users_count * (1 + min(done, rounds)):,} events")
        filled = time.perf_counter() - start
        common.log(f"  log: {filled:.0f} s; building its indexes")
        await conn.execute("SET maintenance_work_mem = '256MB'")
        for row in indexes:
            await conn.execute(row["definition"])
        for row in constraints:
            await conn.execute(
                f'ALTER TABLE events ADD CONSTRAINT "{row["name"]}" {row["definition"]}'
            )
        indexed = time.perf_counter() - start - filled
        await conn.execute("VACUUM ANALYZE events")
        await conn.execute("CHECKPOINT")
        count = await conn.fetchval(queries["event_count"])
    finally:
        await conn.close()
    common.log(f"  log: {count:,} events, indexed in {indexed:.0f} s; rebuilding the users model")
    pool = await database.create_pool(dsn, min_size=1, max_size=2)
    try:
        began = time.perf_counter()
        result = await rebuild.rebuild(store.EventStore(pool), users.UsersProjection())
        rebuilt = time.perf_counter() - began
    finally:
        await pool.close()
    common.log("  log: taking the snapshots a serving hub takes as its log grows")
    snapshots_s, kept = await take_snapshots(dsn)
    return {
        "events": count,
        "fill_s": round(filled, 1),
        "fill_events_per_s": round(count / filled),
        "index_s": round(indexed, 1),
        "users_rebuild_s": round(rebuilt, 1),
        "users_rebuild_events_per_s": round(result.events / rebuilt),
        "snapshots_s": round(snapshots_s, 1),
        "snapshots_kept": kept,
    }


async def take_snapshots(dsn: str) -> tuple[float, list[int]]:
    """The snapshots of the read models that a serving hub with the default settings takes as
    its log grows (one each ``snapshot_every_events`` positions, at most ``snapshot_keep``
    kept): the fill writes the log without a hub, as it rebuilds the users model for it.
    Returns the seconds they took in all (background work of the hub, not part of any
    request) and the positions of those kept."""
    fields = settings.Settings.model_fields
    every, keep = fields["snapshot_every_events"].default, fields["snapshot_keep"].default
    pool = await database.create_pool(dsn, min_size=1, max_size=2)
    try:
        event_store = store.EventStore(pool)
        head = await event_store.head()
        began = time.perf_counter()
        for position in range(every, head.position + 1, every):
            async with pool.acquire() as conn:
                moment = await rebuild.checkpoint_of(conn, position)
            if moment is not None:
                await snapshots.take(event_store, catalog.ALL, at=moment[0], keep=keep)
        took = time.perf_counter() - began
        async with pool.acquire() as conn:
            kept = [s.checkpoint.position for s in await snapshots.listed(conn)]
    finally:
        await pool.close()
    return took, kept


async def append_rate(
    dsn: str, writers: int, seconds: float, user_ids: list[UUID]
) -> dict[str, Any]:
    """``writers`` concurrent single-event appends (``user.admin_changed`` to false, each writer
    on its own users' streams) through the store with the hub's inline projections, for
    ``seconds``: appends/s and their latency at the log's size."""
    pool = await database.create_pool(dsn, min_size=writers, max_size=writers)
    event_store = store.EventStore(pool, inline=base.Inline(catalog.ALL))
    metadata = models.Metadata(actor=models.Actor(kind="service", name="scale-bench"))
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def writer(w: int) -> int:
        done = 0
        mine = user_ids[w::writers]
        while time.perf_counter() < deadline:
            uid = mine[done % len(mine)]
            began = time.perf_counter()
            await event_store.append(
                user_events.stream_id(uid),
                [user_events.UserAdminChanged(user_id=uid, admin=False)],
                metadata=metadata,
            )
            latencies.append(time.perf_counter() - began)
            done += 1
        return done

    try:
        start = time.perf_counter()
        total = sum(await asyncio.gather(*(writer(w) for w in range(writers))))
        elapsed = time.perf_counter() - start
    finally:
        await pool.close()
    return {"append8_per_s": round(total / elapsed)} | percentiles(latencies, "append8")


async def audit_queries(
    session: aiohttp.ClientSession, api: str, token: str, names: list[str], count: int
) -> dict[str, Any]:
    """``GET /hub/api/events?user=<name>&limit=100`` for random users, one at a time."""
    sample = random.Random(0).sample(names, min(count + 5, len(names)))
    url = f"{api}/events"
    headers = common.auth(token)
    for name in sample[:5]:  # warm-up, and one answer checked
        async with session.get(url, params={"user": name, "limit": "100"}, headers=headers) as r:
            body = await r.json()
            if r.status != 200 or not body:
                raise common.StepError(f"history of {name}: {r.status} {str(body)[:300]}")
    latencies = []
    for name in sample[5:]:
        began = time.perf_counter()
        async with session.get(url, params={"user": name, "limit": "100"}, headers=headers) as r:
            await r.read()
            if r.status != 200:
                raise common.StepError(f"history of {name}: {r.status}")
        latencies.append(time.perf_counter() - began)
    return percentiles(latencies, "audit_query") | {"audit_queries": len(latencies)}


async def state_at(dsn: str, workdir: Path) -> dict[str, Any]:
    """``chronohub state --at <the log's middle position> users``, as an operator runs it; and
    at the worst point: just before the kept snapshot farthest from the one before it (or
    from the log's start), where the replay is the longest any ``state --at`` needs."""
    conn = await asyncpg.connect(dsn)
    try:
        total = await conn.fetchval(queries["event_count"])
        middle = await conn.fetchval(queries["middle_position"], total // 2)
        kept = [0] + [s.checkpoint.position for s in await snapshots.listed(conn)]
    finally:
        await conn.close()
    gaps = [(kept[i + 1] - kept[i], kept[i + 1]) for i in range(len(kept) - 1)]
    worst = max(gaps)[1] - 1 if gaps else total
    figures: dict[str, Any] = {}
    for name, position in (("state_at", middle), ("state_at_worst", worst)):
        elapsed = await _state_at(dsn, workdir, position)
        figures |= {f"{name}_s": round(elapsed, 1), f"{name}_position": position}
    return figures


async def _state_at(dsn: str, workdir: Path, position: int) -> float:
    env = {k: v for k, v in os.environ.items() if k not in common.DATABASE_VARIABLES}
    env |= {"CHRONOHUB_DATABASE_URL": dsn, "CHRONOHUB_DATA_DIR": str(workdir / "data")}
    cmd = [str(common.BIN_DIR / "chronohub"), "state", "--at", str(position), "users"]
    began = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *cmd, "--limit", "10", env=env, cwd=workdir,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    elapsed = time.perf_counter() - began
    if proc.returncode != 0:
        raise common.StepError(f"state --at {position} failed: {err.decode()[-500:]}")
    said = [line for line in err.decode().splitlines() if "snapshot" in line or "start" in line]
    common.log(
        f"  state --at {position}: {elapsed:.1f} s ({out.decode().splitlines()[:1]}, {said})"
    )
    return elapsed


# --- the hub's process ---------------------------------------------------------------------


class Gauge:
    """Samples one process's resident memory and open file descriptors from ``/proc`` every
    ``interval`` s; ``mark(phase)`` records the phase's last and peak values."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self.phases: dict[str, dict[str, float]] = {}
        self._peak_rss = 0
        self._peak_fds = 0

    def read(self) -> tuple[int, int]:
        """(resident KB, open file descriptors) now."""
        rss = 0
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
        fds = len(os.listdir(f"/proc/{self.pid}/fd"))
        self._peak_rss = max(self._peak_rss, rss)
        self._peak_fds = max(self._peak_fds, fds)
        return rss, fds

    async def run(self) -> None:
        """Sample until cancelled (the caller owns and cancels the task)."""
        while True:
            try:
                self.read()
            except OSError:  # the process has gone: nothing more to sample
                return
            await asyncio.sleep(self.interval)

    def mark(self, phase: str) -> dict[str, float]:
        rss, fds = self.read()
        self.phases[phase] = {
            "rss_mb": round(rss / 1024, 1),
            "peak_rss_mb": round(self._peak_rss / 1024, 1),
            "fds": fds,
            "peak_fds": self._peak_fds,
        }
        self._peak_rss, self._peak_fds = rss, fds
        return self.phases[phase]


# --- users, groups and the API -------------------------------------------------------------


async def make_groups(
    session: aiohttp.ClientSession, api: str, token: str, names: list[str], groups: int
) -> dict[str, Any]:
    """``groups`` groups (``POST /groups``, 100 a request), each with the next
    ``len(names) // groups`` users as members (``POST /groups/{name}/users``)."""
    headers = common.auth(token)
    group_names = [f"g{g:04d}" for g in range(groups)]
    began = time.perf_counter()
    for i in range(0, groups, 100):
        call = common.Call("POST", f"{api}/groups", headers, {"groups": group_names[i : i + 100]})
        call.expected = 201
        await common.expect(session, call)
    per = max(1, len(names) // groups)

    def members(g: int) -> Awaitable[Any]:
        body = {"users": names[g * per : (g + 1) * per]}
        return common.expect(
            session, common.Call("POST", f"{api}/groups/{group_names[g]}/users", headers, body)
        )

    await bounded((members(g) for g in range(groups)), 16)
    return {
        "groups": groups,
        "members_per_group": per,
        "groups_s": round(time.perf_counter() - began, 1),
    }


async def user_tokens(
    session: aiohttp.ClientSession, api: str, token: str, names: list[str]
) -> list[str]:
    """One new token for each of ``names`` (``POST /users/{name}/tokens``)."""

    async def one(name: str) -> str:
        call = common.Call(
            "POST", f"{api}/users/{name}/tokens", common.auth(token), rest_api.TOKEN_BODY, 201
        )
        body = await common.expect(session, call)
        return str(body["token"])

    return await bounded((one(name) for name in names), 16)


async def concurrent_clients(
    api: str, tokens: list[str], clients: int, seconds: float
) -> dict[str, Any]:
    """``clients`` clients, each on its own connection, calling whoami (``GET /hub/api/user``)
    with the users' tokens as fast as answers come, for ``seconds``."""

    def make(i: int) -> common.Call:
        return common.Call("GET", f"{api}/user", common.auth(tokens[i % len(tokens)]))

    timeout = aiohttp.ClientTimeout(total=rest_api.REQUEST_TIMEOUT)
    connector = aiohttp.TCPConnector(limit=clients, limit_per_host=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # Every client connects first (one request each), so the load is 1,000 connections.
        await rest_api.run_load(session, make, clients, 1.0)
        latencies, failures, elapsed, sample = await rest_api.run_load(
            session, make, clients, seconds
        )
    return {
        "clients": clients,
        "requests": len(latencies) + sum(failures.values()),
        "errors": sum(failures.values()),
        "rps": round(len(latencies) / elapsed),
        **percentiles(latencies, "whoami"),
        **({"failed": dict(failures), "failure": sample} if failures else {}),
    }


# --- rooms ---------------------------------------------------------------------------------


class Room:
    """One room's clients: a writer and readers; each update waits for every reader."""

    def __init__(self, name: str, readers: int) -> None:
        self.name = name
        self.readers = readers
        self.got = 0
        self.sent_at = 0.0
        self.all_in = asyncio.Event()
        self.joined = 0
        self.all_joined = asyncio.Event()
        self.ended: list[str] = []  # how each client's connection ended early, if one did
        self.deliveries: list[float] = []
        self.doc: pycrdt.Doc[Any] = pycrdt.Doc()
        self.array: pycrdt.Array[int] = self.doc.get("a", type=pycrdt.Array)

    def next_update(self, i: int) -> bytes:
        before = self.doc.get_state()
        self.array.append(i)
        return protocol.update_message(self.doc.get_update(before))

    def join(self) -> None:
        """One more client is in the room (the server's sync step 1 came: it joins first)."""
        self.joined += 1
        if self.joined >= self.readers + 1:
            self.all_joined.set()

    def delivered(self) -> None:
        self.deliveries.append(time.perf_counter() - self.sent_at)
        self.got += 1
        if self.got >= self.readers:
            self.all_in.set()


EMPTY_UPDATE = pycrdt.Doc().get_update()


async def read_room(ws: aiohttp.ClientWebSocketResponse, room: Room, reader: bool) -> None:
    """A client's reading side: answer the server's sync step 1 (as a Yjs provider does; the
    room sends it on joining), and for a reader count each update. An update sent before a
    reader joined would reach it inside sync step 2 instead: the writers wait for every join.
    A connection that ends (closed by the hub, say) is noted in ``room.ended`` with why."""
    closing = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED)
    try:
        while True:
            msg = await ws.receive()
            if msg.type in closing:
                room.ended.append(f"closed: {ws.close_code} {msg.extra or ''}".strip())
                return
            if msg.type == aiohttp.WSMsgType.ERROR:
                room.ended.append(f"error: {ws.exception()!r}")
                return
            if msg.type != aiohttp.WSMsgType.BINARY:
                continue
            message = protocol.parse(msg.data)
            if not isinstance(message, protocol.SyncMessage):
                continue
            if message.subtype == protocol.SYNC_STEP1:
                room.join()
                await ws.send_bytes(protocol.sync_step2(EMPTY_UPDATE))
            elif message.subtype == protocol.SYNC_UPDATE and reader:
                room.delivered()
    except Exception as exc:  # said in the report: the part goes on with the other rooms
        room.ended.append(f"{type(exc).__name__}: {str(exc)[:200]}")
        raise


async def rooms_part(
    base: str, token: str, rooms: int, clients: int, updates: int, gauge: Gauge
) -> dict[str, Any]:
    """``rooms`` rooms with ``clients`` clients each (the service's token): opened, then one
    writer per room sends ``updates`` updates, each when every reader has the last one (all
    rooms at once). Memory per room is the hub's resident growth over the rooms."""
    # The driver's own pauses are not the hub's: its 4,000 client sockets' objects, scanned by
    # full collections every few seconds at CPython's default young threshold (700), stalled
    # its reading 0.1-0.3 s each time (issue 20). The hub collects at the same threshold.
    thresholds = gc.get_threshold()
    gc.set_threshold(DRIVER_GC_YOUNG_THRESHOLD, *thresholds[1:])
    try:
        return await _rooms_part(base, token, rooms, clients, updates, gauge)
    finally:
        gc.set_threshold(*thresholds)


async def _rooms_part(
    base: str, token: str, rooms: int, clients: int, updates: int, gauge: Gauge
) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=60)
    connector = aiohttp.TCPConnector(limit=0)
    all_rooms = [Room(f"scale-{r:04d}-{os.getpid()}", clients - 1) for r in range(rooms)]
    readers: list[asyncio.Task[None]] = []
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    errors: Counter[str] = Counter()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        gauge.mark("before_rooms")
        before_kb = gauge.read()[0]
        began = time.perf_counter()

        async def join(room: Room, c: int) -> aiohttp.ClientWebSocketResponse:
            ws = await session.ws_connect(
                f"{base}/collab/{room.name}?token={token}", heartbeat=None
            )
            await ws.send_bytes(protocol.sync_step1(pycrdt.Doc()))
            readers.append(asyncio.create_task(read_room(ws, room, reader=c > 0)))
            return ws

        try:
            writers = {}
            joined = []

            async def open_room(room: Room) -> None:
                """The room's clients connected, then every one joined (or why not)."""
                group = await bounded((join(room, c) for c in range(clients)), clients)
                writers[room.name] = group[0]
                sockets.extend(group)
                try:
                    await asyncio.wait_for(room.all_joined.wait(), JOIN_TIMEOUT)
                    joined.append(room)
                except TimeoutError:
                    why = "; ".join(sorted(set(room.ended))) or "no answer"
                    errors[f"room not joined by every client in {JOIN_TIMEOUT:g} s ({why})"] += 1

            # At most OPENING rooms being opened at once: a thousand rooms opened in one
            # burst queue their loads on the hub's database pool (see the report).
            await bounded((open_room(room) for room in all_rooms), OPENING)
            if not joined:
                raise common.StepError(f"no room joined by its {clients} clients: {dict(errors)}")
            opened = time.perf_counter() - began
            common.log(f"  {rooms} rooms x {clients} clients open in {opened:.1f} s")

            async def write(room: Room, ws: aiohttp.ClientWebSocketResponse) -> None:
                for i in range(updates):
                    room.got = 0
                    room.all_in.clear()
                    room.sent_at = time.perf_counter()
                    await ws.send_bytes(room.next_update(i))
                    try:
                        await asyncio.wait_for(room.all_in.wait(), 30)
                    except TimeoutError:
                        errors["update not delivered to every reader in 30 s"] += 1
                        return

            start = time.perf_counter()
            await asyncio.gather(*(write(room, writers[room.name]) for room in joined))
            elapsed = time.perf_counter() - start
            after_kb = gauge.read()[0]
            phase = gauge.mark("rooms")
        finally:
            for ws in sockets:
                await ws.close()
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
    latencies = [d for room in all_rooms for d in room.deliveries]
    return {
        "rooms": rooms,
        "rooms_joined": len(joined),
        "clients_per_room": clients,
        "updates_per_room": updates,
        "open_s": round(opened, 1),
        "room_kb": round((after_kb - before_kb) / rooms, 1),
        "deliveries": len(latencies),
        "deliveries_per_s": round(len(latencies) / elapsed) if elapsed else None,
        **percentiles(latencies, "delivery"),
        "errors": dict(errors),
        "hub_rss_mb": phase["rss_mb"],
        "hub_fds": phase["peak_fds"],
    }


# --- clones --------------------------------------------------------------------------------


async def clones_part(
    session: aiohttp.ClientSession, base: str, token: str, root: Path, clones: int, files: int
) -> dict[str, Any]:
    """A project of ``files`` 5 KB files pushed once, then ``clones`` ``git clone`` at once."""
    git = git_http.Git(root / "home")
    hub = git_http.Hub(session, base, token)
    user_token = await hub.user_token("cloner")
    url = git_http.with_token(await hub.project(user_token, "scale"), user_token)
    work = root / "work"
    await git_http.make_work_tree(git, work, files)
    await git.run("push", "-q", url, "main", cwd=work)

    async def clone(i: int) -> float | str:
        try:
            return await git.run("clone", "-q", url, str(root / f"clone{i}"), cwd=root)
        except RuntimeError as exc:
            return str(exc)[-300:]

    began = time.perf_counter()
    results = await asyncio.gather(*(clone(i) for i in range(clones)))
    wall = time.perf_counter() - began
    times = [r for r in results if isinstance(r, float)]
    failed = [r for r in results if isinstance(r, str)]
    return {
        "clones": clones,
        "files": files,
        "wall_s": round(wall, 1),
        "errors": len(failed),
        **({"failure": failed[0]} if failed else {}),
        "clone_p50_s": round(statistics.median(times), 2) if times else None,
        "clone_p99_s": round(common.quantile(sorted(times), 0.99), 2) if times else None,
    }


def hub_limits(env: dict[str, str]) -> dict[str, Any]:
    """The hub's settings that bound these loads (its defaults unless the run set them)."""
    from hub import settings as hub_settings

    fields = hub_settings.Settings.model_fields
    keys = (
        "db_pool_max", "db_acquire_timeout", "db_statement_timeout", "project_git_threads",
        "project_git_timeout_s", "collab_rate_per_s", "collab_rate_burst",
        "collab_send_buffer_bytes", "collab_room_grace_s",
    )  # fmt: skip
    return {key: env.get(f"CHRONOHUB_{key.upper()}", fields[key].default) for key in keys}
