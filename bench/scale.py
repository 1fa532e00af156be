"""Scale benchmark: one hub process at the size of a large installation, figures beside targets.

Run with ``make bench-scale`` (``--small``: every part at 1/10 of its size, for a quick
check). Prints progress on stderr and one JSON line on stdout. Not a test: nothing here
asserts timing. Loopback only; every part stops by count and deadline. The parts live in
``bench/scale_parts.py``; this module runs them in order and reports.

The set-up: one embedded PostgreSQL (the hub's own ``hub.embedded_db``, default durable
configuration) in a temporary directory, migrated, its log filled by ``generate_series``
(``bench/scale.sql``) with ``--events`` events of real shapes: ``user.created`` for
``--users`` users (``u00000``...), then an even number of ``user.admin_changed`` rounds over
them, interleaved; the users read model is then rebuilt over the log (``projections.rebuild``),
so log and read models agree as if the hub had lived through those events. Then ``chronohub
serve`` runs as its own process on that database (``CHRONOHUB_DATABASE_URL``), requests to its
hub port, with one service whose role holds the scopes below, and the hub's default limits
(``limits`` in the output). The hub's resident memory and open file descriptors are sampled
from ``/proc`` every 0.2 s; each part records them (``hub_process``).

The parts, in order (a part that fails says why under ``errors``; the rest still run):

* ``api``: ``--groups`` groups (``POST /groups``) with ``--users``/``--groups`` members each;
  then, as ``make bench-api`` measures them but with 8 clients (``--api-concurrency``:
  latency, not queueing; 1 s warm-up, 5 s counted): the users
  list's first page (``GET /users?limit=50``, pagination), whoami with user tokens, token
  creation; p50/p99 ms;
* ``clients``: ``--clients`` concurrent clients, each on its own connection, calling whoami
  for ``--seconds`` s: errors and p99. The benchmark raises its own open-file limit to the hard
  limit (``resource.setrlimit``); the hub inherits it (``rlimit_nofile``): at the usual soft
  limit of 1,024 neither could hold these connections;
* ``rooms``: ``--rooms`` rooms with 4 clients each (Python y-websocket clients, the service's
  token): all opened, then in every room at once a writer sends ``--updates`` updates, each
  when its 3 readers have the last one; memory per room (the hub's resident growth over the
  rooms, divided by their number), deliveries/s, delivery latency p50/p99;
* ``clones``: a project of 200 files of 5 KB pushed once, then ``--clones`` ``git clone`` at
  once: wall time, errors, p50/p99 of one clone;
* ``log``: at the filled log's size, 8 writers appending single events through the store with
  the hub's inline projections for ``--seconds`` s (appends/s); 200 audit queries
  (``GET /events?user=<name>&limit=100``, one at a time, random users): p50/p99; ``chronohub
  state --at <the log's middle position> users`` run as a command: seconds; and the same at
  the worst point (``state_at_worst_s``): just before the kept snapshot farthest from the one
  before it. The fill takes the snapshots of the read models that a serving hub with the
  default settings takes as its log grows (``snapshots_s`` in the fill's detail: the hub's
  background work, not counted in any figure).

The client and the hub share the machine (2 cores here): figures taken while other programs
load it are noisy (``load_average`` says how much).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench import common, rest_api
from bench import scale_parts as parts
from bench.event_store import start_server
from hub import database

SCOPES = [
    "admin:users", "admin:groups", "groups", "tokens", "list:users", "read:users",
    "read:hub", "write:collab", "read:events", "admin:servers",
]  # fmt: skip
FULL = {
    "users": 10_000, "groups": 1_000, "clients": 1_000, "rooms": 1_000, "clones": 100,
    "events": 10_000_000,
}  # fmt: skip
PARTS = ("api", "clients", "rooms", "clones", "log")
ROOM_CLIENTS = 4
CLONE_FILES = 200
AUDIT_QUERIES = 200
# Each headline figure, the way it is held to its target, and the target (README says why).
TARGETS: dict[str, tuple[str, float]] = {
    "users_list_p99_ms": ("<=", 100.0),
    "whoami_p99_ms": ("<=", 50.0),
    "token_create_p99_ms": ("<=", 100.0),
    "clients_errors": ("<=", 0),
    "clients_p99_ms": ("<=", 1000.0),
    "rooms_not_joined": ("<=", 0),
    "room_kb": ("<=", 100.0),
    "deliveries_per_s": (">=", 5000.0),
    "delivery_p99_ms": ("<=", 500.0),
    "clones_errors": ("<=", 0),
    "clones_wall_s": ("<=", 60.0),
    "append8_per_s": (">=", 2000.0),
    "audit_query_p99_ms": ("<=", 100.0),
    "state_at_s": ("<=", 60.0),
    "state_at_worst_s": ("<=", 60.0),
    "hub_peak_rss_mb": ("<=", 1024.0),
    "hub_peak_fds": ("<=", 5_000),
}


def raise_file_limit() -> dict[str, int]:
    """The soft limit on open files raised to the hard one (the hub, started after, inherits
    it); both limits after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {"soft": soft, "hard": hard}


def start_hub(workdir: Path, dsn: str, token: str) -> common.Server:
    """``chronohub serve`` on ``dsn``, its service ``bench`` holding ``SCOPES``."""
    common.reachable(workdir)
    config = workdir / "chronohub.toml"
    config.write_text(
        f'[[services]]\nname = "bench"\napi_token = "{token}"\n\n'
        f'[[roles]]\nname = "bench-role"\nscopes = {json.dumps(SCOPES)}\nservices = ["bench"]\n'
    )
    hub_port, public_port = common.free_port(), common.free_port()
    env = {k: v for k, v in os.environ.items() if k not in common.DATABASE_VARIABLES}
    env |= {
        "CHRONOHUB_DATABASE_URL": dsn,
        "CHRONOHUB_DATA_DIR": str(workdir / "data"),
        "CHRONOHUB_CONFIG": str(config),
        "CHRONOHUB_LOG_LEVEL": "WARNING",
    }
    cmd = [
        str(common.BIN_DIR / "chronohub"), "serve", "--ip", "127.0.0.1",
        "--port", str(public_port), "--hub-port", str(hub_port),
    ]  # fmt: skip
    return common.spawn("chronohub", cmd, env, workdir, f"http://127.0.0.1:{hub_port}/hub/api")


async def create_database(admin_url: str) -> str:
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute("CREATE DATABASE bench_scale")
    finally:
        await admin.close()
    dsn = admin_url.replace("/postgres?", "/bench_scale?")
    await database.migrate(dsn)
    return dsn


class Run:
    """One run's figures, errors and the hub it measures."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.figures: dict[str, Any] = {}
        self.detail: dict[str, Any] = {}
        self.errors: dict[str, str] = {}

    async def part(self, name: str, body: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        """Run one part (if asked for); its figures under ``detail[name]``, or why it failed."""
        if name not in self.args.parts:
            return
        common.log(f"{name}")
        began = time.perf_counter()
        with rest_api.step(self.errors, "scale", name):
            self.detail[name] = await body()
            self.detail[name]["part_s"] = round(time.perf_counter() - began, 1)


async def api_part(
    session: aiohttp.ClientSession,
    server: common.Server,
    token: str,
    names: list[str],
    args: argparse.Namespace,
    errors: dict[str, str],
) -> tuple[dict[str, Any], list[str]]:
    """Groups made; users list, whoami and token creation measured at this size; the user
    tokens made for the concurrent clients."""
    figures = await parts.make_groups(session, server.api, token, names, args.groups)
    tokens = await parts.user_tokens(
        session, server.api, token, names[: max(rest_api.WHOAMI_USERS, args.clients // 10)]
    )
    load = argparse.Namespace(concurrency=args.api_concurrency, warmup=1.0, seconds=5.0)
    suite = rest_api.Suite("scale", session, server, token, load, errors)
    suite.users = names
    suite.user_tokens = tokens[: rest_api.WHOAMI_USERS]
    for kind in rest_api.KINDS:
        await suite.measure(kind, len(names))
        measured = suite.figures.get(f"{kind}_{len(names)}")
        if measured:
            figures[kind] = {
                k: measured[k]
                for k in ("rps", "p50_ms", "p99_ms", "requests", "server_cpu_ms_per_req")
            }
    return figures, tokens


def headline(detail: dict[str, Any], process: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The figures held to ``TARGETS``, picked out of the parts' detail."""

    def get(part: str, *keys: str) -> Any:
        value: Any = detail.get(part)
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    return {
        "users_list_p50_ms": get("api", "users", "p50_ms"),
        "users_list_p99_ms": get("api", "users", "p99_ms"),
        "whoami_p50_ms": get("api", "whoami", "p50_ms"),
        "whoami_p99_ms": get("api", "whoami", "p99_ms"),
        "token_create_p50_ms": get("api", "token_create", "p50_ms"),
        "token_create_p99_ms": get("api", "token_create", "p99_ms"),
        "clients_errors": get("clients", "errors"),
        "clients_p99_ms": get("clients", "whoami_p99_ms"),
        "rooms_not_joined": (
            get("rooms", "rooms") - get("rooms", "rooms_joined") if "rooms" in detail else None
        ),
        "room_kb": get("rooms", "room_kb"),
        "deliveries_per_s": get("rooms", "deliveries_per_s"),
        "delivery_p99_ms": get("rooms", "delivery_p99_ms"),
        "clones_wall_s": get("clones", "wall_s"),
        "clones_errors": get("clones", "errors"),
        "clone_p99_s": get("clones", "clone_p99_s"),
        "append8_per_s": get("log", "append8_per_s"),
        "audit_query_p50_ms": get("log", "audit_query_p50_ms"),
        "audit_query_p99_ms": get("log", "audit_query_p99_ms"),
        "state_at_s": get("log", "state_at_s"),
        "state_at_worst_s": get("log", "state_at_worst_s"),
        "hub_peak_rss_mb": max((p["peak_rss_mb"] for p in process.values()), default=None),
        "hub_peak_fds": max((p["peak_fds"] for p in process.values()), default=None),
    }


def misses(figures: dict[str, Any]) -> list[str]:
    """One note per figure that misses its target (or was not measured), saying by how much."""
    notes = []
    for key, (op, target) in TARGETS.items():
        value = figures.get(key)
        if value is None:
            notes.append(f"{key}: not measured")
            continue
        if (value <= target) if op == "<=" else (value >= target):
            continue
        if target == 0:
            notes.append(f"{key} = {value} misses its target {op} 0")
        else:
            factor = value / target if op == "<=" else target / value
            notes.append(f"{key} = {value:,} misses its target {op} {target:,g} ({factor:.1f}x)")
    return notes


async def main(args: argparse.Namespace) -> dict[str, Any]:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    began = time.perf_counter()
    load_before = round(os.getloadavg()[0], 1)
    run = Run(args)
    nofile = raise_file_limit()
    root = Path(tempfile.mkdtemp(prefix="chronohub-bench-scale-"))
    root.chmod(0o711)  # a root run's PostgreSQL account passes through to its cluster
    pg, admin_url = start_server(root / "pg")
    token = secrets.token_hex(24)
    names = [parts.user_name(u) for u in range(args.users)]
    server = None
    gauge_task = None
    process: dict[str, dict[str, float]] = {}
    try:
        dsn = await create_database(admin_url)
        common.log(f"filling the log: {args.events:,} events, {args.users:,} users")
        run.detail["fill"] = await parts.fill_log(dsn, args.events, args.users)
        server = start_hub(root, dsn, token)
        timeout = aiohttp.ClientTimeout(total=rest_api.REQUEST_TIMEOUT)
        connector = aiohttp.TCPConnector(limit=32)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            run.detail["hub_ready_s"] = round(await common.wait_ready(session, server), 1)
            gauge = parts.Gauge(server.proc.pid)
            process = gauge.phases
            gauge_task = asyncio.create_task(gauge.run(), name="bench-scale-gauge")
            gauge.mark("ready")
            tokens: list[str] = []

            async def api() -> dict[str, Any]:
                figures, made = await api_part(session, server, token, names, args, run.errors)
                tokens.extend(made)
                gauge.mark("api")
                return figures

            await run.part("api", api)
            ws_base = server.api.removesuffix("/hub/api").replace("http://", "ws://")

            async def clients() -> dict[str, Any]:
                if not tokens:
                    raise common.StepError("no user tokens (the api part failed)")
                figures = await parts.concurrent_clients(
                    server.api, tokens, args.clients, args.seconds
                )
                gauge.mark("clients")
                return figures

            await run.part("clients", clients)
            await run.part(
                "rooms",
                lambda: parts.rooms_part(
                    ws_base, token, args.rooms, ROOM_CLIENTS, args.updates, gauge
                ),
            )

            async def clones() -> dict[str, Any]:
                base = server.api.removesuffix("/hub/api")
                figures = await parts.clones_part(
                    session, base, token, root / "git", args.clones, CLONE_FILES
                )
                gauge.mark("clones")
                return figures

            await run.part("clones", clones)

            async def log_figures() -> dict[str, Any]:
                conn = await asyncpg.connect(dsn)
                try:
                    ids = [r["user_id"] for r in await conn.fetch(parts.queries["user_ids"])]
                finally:
                    await conn.close()
                figures = await parts.append_rate(dsn, 8, args.seconds, ids)
                figures |= await parts.audit_queries(
                    session, server.api, token, names, AUDIT_QUERIES
                )
                figures |= await parts.state_at(dsn, root)
                gauge.mark("log")
                return figures | {"events": run.detail["fill"]["events"]}

            await run.part("log", log_figures)
            if server.proc.poll() is not None:
                run.errors["scale.hub_exited"] = server.log_tail()
    finally:
        if gauge_task is not None:
            gauge_task.cancel()
            await asyncio.gather(gauge_task, return_exceptions=True)
        if server is not None:
            common.stop(server)
        pg.remove()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    figures = headline(run.detail, process)
    return {
        **figures,
        "targets": {key: f"{op} {target:g}" for key, (op, target) in TARGETS.items()},
        "notes": misses(figures),
        "size": {k: getattr(args, k) for k in FULL} | {"small": args.small, "parts": args.parts},
        "hub_process": process,
        "limits": parts.hub_limits(dict(os.environ)),
        "rlimit_nofile": nofile,
        "detail": run.detail,
        "errors": run.errors,
        "runtime_s": round(time.perf_counter() - began),
        "load_average_1m_before_after": [load_before, round(os.getloadavg()[0], 1)],
        "cpus": os.cpu_count(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: ``--small`` scales every size it does not set to 1/10."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--small", action="store_true", help="every part at 1/10 of its size (a quick check)"
    )
    for key, size in FULL.items():
        parser.add_argument(
            f"--{key}", type=positive, default=None, help=f"default {size:,} (--small: 1/10)"
        )
    parser.add_argument(
        "--api-concurrency", type=positive, default=8, help="clients of the api part's latencies"
    )
    parser.add_argument("--updates", type=positive, default=20, help="updates per room")
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="length of the clients and append runs"
    )
    parser.add_argument(
        "--parts",
        type=part_names,
        default=PARTS,
        help=f"the parts to run, comma-separated (default all: {','.join(PARTS)}; clients"
        " needs api's tokens)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    for key, size in FULL.items():
        if getattr(args, key) is None:
            setattr(args, key, size // 10 if args.small else size)
    if args.users < args.groups:
        parser.error(f"--users ({args.users}) must be at least --groups ({args.groups})")
    if args.users < rest_api.WHOAMI_USERS:
        parser.error(f"--users must be at least {rest_api.WHOAMI_USERS}")
    if args.events < 3 * args.users:
        parser.error(f"--events must be at least 3 x --users ({3 * args.users:,})")
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    return args


def part_names(text: str) -> tuple[str, ...]:
    """An argparse type: some of ``PARTS``, comma-separated."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in PARTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown part {unknown[0]!r}" if unknown else "no part named"
        )
    return names


def positive(text: str) -> int:
    """An argparse type: a whole number above 0."""
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0: {value}")
    return value


def cli() -> None:
    args = parse_args()
    try:
        import uvloop

        run: Callable[[Any], dict[str, Any]] = uvloop.run
    except ImportError:
        run = asyncio.run
    try:
        result = run(main(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        common.log("interrupted")
        sys.exit(130)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    cli()
