"""Collaboration benchmark: chronohub's rooms beside pycrdt-websocket and the Node reference server.

Run with ``make bench-collab``. Prints progress on stderr and one JSON line on stdout. Not a
test: nothing here asserts timing. Loopback only; every phase stops by count and deadline.

The servers, one after the other (the machine has 2 cores; the driver needs one):

* chronohub: ``chronohub serve``, joined at the hub's own address (``--hub-port``, a free
  port; the others are joined directly too), its own embedded PostgreSQL in a temporary
  directory, **persistence on** (every update appended before it is broadcast). A service
  ``bench`` holding ``write:collab`` joins with ``?token=``. The per-connection flood limit is
  raised (``CHRONOHUB_COLLAB_RATE_PER_S``/``_BURST``): a burst writer is a flood by design.
* pycrdt-websocket 0.16 (``bench/collab_pycrdt_server.py``): ``WebsocketServer`` on the
  ``websockets`` package, asyncio, no store.
* the Node reference server, ``@y/websocket-server`` 0.1.1 (``bench/collab_node/package.json``),
  no persistence.

The driver (``bench/collab_node/driver.mjs``, Node, the same for all three):

* fan-out: one writer sends a burst of ``--updates`` one-element Y.Array pushes into a room
  with N-1 readers (N = 2, 16, 64); deliveries/s = update frames received by the readers
  over the time from the first send to the last delivery; CPU per delivery = the CPU time the
  server's main thread (its event loop) spent over that burst, divided by the deliveries
  (``/proc/<pid>/task/<pid>/schedstat``), a figure that a loaded machine moves much less than
  a rate; busy = a side's CPU time over the burst's length (the server's event loop,
  chronohub's embedded PostgreSQL, the driver's Node process): a side near 1 bounds the rate;
* latency: the writer sends 50 updates/s for ``--samples`` updates; one reader applies them
  with yjs and times each from its send (the first second is warm-up), N-2 others count;
* idle rooms: 1,000 rooms opened with one small edit each, then left; memory per idle room is
  the server process's resident memory growth over those rooms (chronohub keeps an empty room
  loaded for its grace period, pycrdt-websocket runs with ``auto_clean_rooms=False``, the
  Node server never unloads a document without persistence).

Ratios are chronohub's deliveries/s over the peer's at 64 clients. Figures measured while
other programs load the machine are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import common  # reachable(): a data directory a root hub's database can reach

ROOT = Path(__file__).resolve().parent.parent
BIN_DIR = Path(sys.executable).parent
NODE_DIR = ROOT / "bench" / "collab_node"
DRIVER = NODE_DIR / "driver.mjs"
NODE_SERVER = NODE_DIR / "node_modules" / "@y" / "websocket-server" / "src" / "server.js"
PYCRDT_SERVER = ROOT / "bench" / "collab_pycrdt_server.py"
DATABASE_VARIABLES = ("CHRONOHUB_DATABASE_URL", "DATABASE_URL", "PGHOST", "PGDATABASE")
READY_TIMEOUT = 120.0
STOP_TIMEOUT = 20.0
CLIENTS = (2, 16, 64)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A server subprocess and how its rooms are addressed."""

    label: str
    proc: subprocess.Popen[bytes]
    port: int
    room_base: str  # ws://127.0.0.1:<port>[/collab]
    query: str = ""
    log_path: Path | None = None
    log_file: Any = field(default=None, repr=False)

    def room_url(self, room: str) -> str:
        return f"{self.room_base}/{room}" + (f"?{self.query}" if self.query else "")

    def cpu_s(self) -> float:
        """CPU time of the server's main thread (its event loop) so far, in seconds."""
        pid = self.proc.pid
        return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[0]) / 1e9

    def database_cpu_s(self) -> float | None:
        """CPU time so far of the server's embedded PostgreSQL (the postmaster that names the
        server's directory, and its backends), in seconds; None without one (or psutil)."""
        try:
            import psutil
        except ImportError:
            return None
        if self.log_path is None:
            return None
        marker = str(self.log_path.parent)
        total, found = 0.0, False
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info["cmdline"] or ()
            if proc.pid == self.proc.pid or not any(marker in part for part in cmdline):
                continue
            if not any(part.endswith("postgres") for part in cmdline[:1]):
                continue
            try:
                for member in [proc, *proc.children(recursive=True)]:
                    times = member.cpu_times()
                    total += times.user + times.system
                    found = True
            except psutil.Error:
                continue
        return total if found else None

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")


def spawn(label: str, cmd: list[str], env: dict[str, str], workdir: Path) -> tuple[Any, Any, Path]:
    log_path = workdir / f"{label}.log"
    log_file = log_path.open("wb")
    proc = subprocess.Popen(
        cmd,
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc, log_file, log_path


def start_chronohub(workdir: Path) -> Server:
    common.reachable(workdir)
    token = secrets.token_hex(16)
    config = workdir / "chronohub.toml"
    config.write_text(
        "[[services]]\n"
        'name = "bench"\n'
        f'api_token = "{token}"\n\n'
        "[[roles]]\n"
        'name = "bench-collab"\n'
        'scopes = ["write:collab"]\n'
        'services = ["bench"]\n'
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in DATABASE_VARIABLES}
    env |= {
        "CHRONOHUB_DATA_DIR": str(workdir / "data"),
        "CHRONOHUB_CONFIG": str(config),
        "CHRONOHUB_COLLAB_RATE_PER_S": "1000000",
        "CHRONOHUB_COLLAB_RATE_BURST": "1000000",
        "CHRONOHUB_LOG_LEVEL": "WARNING",
    }
    # Clients join at the hub's own address (--hub-port), as the other servers are joined
    # directly: the rooms are compared, not the proxy in front of them.
    cmd = [
        str(BIN_DIR / "chronohub"), "serve", "--ip", "127.0.0.1",
        "--port", str(free_port()), "--hub-port", str(port),
    ]  # fmt: skip
    proc, log_file, log_path = spawn("chronohub", cmd, env, workdir)
    return Server(
        "chronohub", proc, port, f"ws://127.0.0.1:{port}/collab", f"token={token}",
        log_path, log_file,
    )  # fmt: skip


def start_pycrdt(workdir: Path) -> Server:
    port = free_port()
    cmd = [sys.executable, str(PYCRDT_SERVER), str(port)]
    proc, log_file, log_path = spawn("pycrdt", cmd, dict(os.environ), workdir)
    return Server("pycrdt_websocket", proc, port, f"ws://127.0.0.1:{port}", "", log_path, log_file)


def start_node(workdir: Path) -> Server:
    port = free_port()
    env = dict(os.environ) | {"HOST": "127.0.0.1", "PORT": str(port)}
    proc, log_file, log_path = spawn("node", ["node", str(NODE_SERVER)], env, workdir)
    return Server("node", proc, port, f"ws://127.0.0.1:{port}", "", log_path, log_file)


async def wait_ready(server: Server) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            tail = server.log_path.read_text()[-2000:] if server.log_path else ""
            raise RuntimeError(f"{server.label} exited early: {tail}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        except OSError:
            await asyncio.sleep(0.2)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise RuntimeError(f"{server.label} not ready after {READY_TIMEOUT:.0f} s")


def stop(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()
    if server.log_file is not None:
        server.log_file.close()


async def drive(*args: str | int | float, server: Server | None = None) -> dict[str, Any]:
    """Run the driver once; its JSON line. For a fan-out, with ``server``'s CPU time over the
    burst (``cpu_s``: from when every client is in until the result comes)."""
    proc = await asyncio.create_subprocess_exec(
        "node", str(DRIVER), *map(str, args), cwd=NODE_DIR, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None
    assert proc.stdout is not None
    cpu_before = database_before = None
    if args[0] == "fanout":
        connected = await asyncio.wait_for(proc.stdout.readline(), 300)
        if connected.strip() == b"connected":
            if server is not None:
                cpu_before, database_before = server.cpu_s(), server.database_cpu_s()
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
    out, err = await asyncio.wait_for(proc.communicate(), 300)
    cpu_after = server.cpu_s() if server is not None and cpu_before is not None else None
    database_after = (
        server.database_cpu_s() if server is not None and database_before is not None else None
    )
    if proc.returncode != 0:
        raise RuntimeError(f"driver {args[0]} failed: {err.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    if cpu_before is not None and cpu_after is not None:
        result["cpu_s"] = cpu_after - cpu_before
    if database_before is not None and database_after is not None:
        result["database_cpu_s"] = database_after - database_before
    return result


async def measure(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    await wait_ready(server)
    # One room first, so that the baseline includes what any first room loads.
    await drive("rooms", server.room_base, 1, server.query)
    await asyncio.sleep(1.0)
    before = server.rss_kb()
    rooms = await drive("rooms", server.room_base, args.rooms, server.query)
    await asyncio.sleep(2.0)
    after = server.rss_kb()
    figures["idle_rooms"] = rooms["rooms"]
    figures["idle_room_kb"] = round((after - before) / args.rooms, 1)
    figures["rss_mb_after_idle_rooms"] = round(after / 1024, 1)
    log(f"  {server.label}: {figures['idle_room_kb']} KB per idle room")
    for clients in CLIENTS:
        room = f"fanout-{clients}-{secrets.token_hex(3)}"
        result = await drive("fanout", server.room_url(room), clients, args.updates, server=server)
        figures[f"deliveries_per_s_c{clients}"] = round(result["deliveries_per_s"])
        figures[f"fanout_complete_c{clients}"] = result["complete"]
        cpu = result.get("cpu_s")
        if cpu is not None and result["delivered"]:
            figures[f"cpu_us_per_delivery_c{clients}"] = round(1e6 * cpu / result["delivered"], 3)
        # Which side was busy over the burst (CPU time over its length): near 1, that side
        # bounds the rate; the driver's Node process and the server share the 2 cores.
        if result["seconds"]:
            if cpu is not None:
                figures[f"server_busy_c{clients}"] = round(cpu / result["seconds"], 2)
            if (database := result.get("database_cpu_s")) is not None:
                figures[f"database_busy_c{clients}"] = round(database / result["seconds"], 2)
            driver = result["driver_cpu_s"]
            figures[f"driver_busy_c{clients}"] = round(driver / result["seconds"], 2)
        log(
            f"  {server.label}: {clients} clients: {result['deliveries_per_s']:.0f} deliveries/s,"
            f" {figures.get(f'cpu_us_per_delivery_c{clients}')} us of CPU per delivery;"
            f" busy over the burst: server {figures.get(f'server_busy_c{clients}')},"
            f" its database {figures.get(f'database_busy_c{clients}')},"
            f" driver {figures.get(f'driver_busy_c{clients}')}"
        )
    for clients in CLIENTS:
        room = f"latency-{clients}-{secrets.token_hex(3)}"
        result = await drive("latency", server.room_url(room), clients, 50, args.samples)
        figures[f"p50_ms_c{clients}_rate50"] = _round(result["p50_ms"])
        figures[f"p99_ms_c{clients}_rate50"] = _round(result["p99_ms"])
        figures[f"lost_c{clients}_rate50"] = result["lost"]
        log(
            f"  {server.label}: {clients} clients at 50/s: p50 {result['p50_ms']:.2f} ms,"
            f" p99 {result['p99_ms']:.2f} ms"
        )
    return figures


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def ratio(a: Any, b: Any, digits: int = 2) -> float | None:
    return (
        round(a / b, digits)
        if isinstance(a, int | float) and isinstance(b, int | float) and b
        else None
    )


async def main(args: argparse.Namespace) -> dict[str, Any]:
    for needed in (DRIVER, NODE_SERVER):
        if not needed.exists():
            raise SystemExit(f"{needed} is missing: run `make bench-collab` (it runs npm ci)")
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    starters: list[tuple[str, Callable[[Path], Server]]] = [
        ("chronohub", start_chronohub),
        ("pycrdt_websocket", start_pycrdt),
        ("node", start_node),
    ]
    with tempfile.TemporaryDirectory(prefix="chronohub-bench-collab-") as tmp:
        for label, start in starters:
            if label not in args.servers.split(","):
                continue
            workdir = Path(tmp) / label
            workdir.mkdir()
            log(f"{label}: starting")
            server = start(workdir)
            try:
                results[label] = await measure(server, args)
            except Exception as exc:
                errors[label] = str(exc)[-1000:]
                log(f"{label}: failed: {exc}")
            finally:
                stop(server)
                if args.keep_logs and server.log_path is not None:
                    Path(args.keep_logs).mkdir(parents=True, exist_ok=True)
                    shutil.copy(server.log_path, Path(args.keep_logs) / server.log_path.name)
        shutil.rmtree(tmp, ignore_errors=True)
    ours = results.get("chronohub", {})
    node = results.get("node", {})
    pycrdt = results.get("pycrdt_websocket", {})
    return {
        "benchmark": "collab",
        "updates": args.updates,
        "samples": args.samples,
        "deliveries_vs_node_c64": ratio(
            ours.get("deliveries_per_s_c64"), node.get("deliveries_per_s_c64")
        ),
        "deliveries_vs_pycrdt_c64": ratio(
            ours.get("deliveries_per_s_c64"), pycrdt.get("deliveries_per_s_c64")
        ),
        # chronohub's CPU per delivery over the Node server's: below 1, chronohub spends less
        "cpu_per_delivery_vs_node_c64": ratio(
            ours.get("cpu_us_per_delivery_c64"), node.get("cpu_us_per_delivery_c64"), 3
        ),
        "cpu_us_per_delivery_c64": ours.get("cpu_us_per_delivery_c64"),
        "p99_ms_c64_rate50": ours.get("p99_ms_c64_rate50"),
        "idle_room_kb": ours.get("idle_room_kb"),
        # each server's and the driver's share of the 64-client burst spent on a core: the
        # side near 1 bounds that server's rate
        "busy_c64": {
            label: {
                side: figures.get(f"{side}_busy_c64") for side in ("server", "database", "driver")
            }
            for label, figures in results.items()
        },
        **{
            f"deliveries_vs_node_c{c}": ratio(
                ours.get(f"deliveries_per_s_c{c}"), node.get(f"deliveries_per_s_c{c}")
            )
            for c in CLIENTS
        },
        "servers": results,
        "errors": errors,
        "cpu_count": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=2000, help="updates per fan-out burst")
    parser.add_argument("--samples", type=int, default=500, help="updates per latency run")
    parser.add_argument("--rooms", type=int, default=1000, help="idle rooms for memory")
    parser.add_argument("--keep-logs", help="copy each server's log into this directory")
    parser.add_argument(
        "--servers", default="chronohub,pycrdt_websocket,node", help="which servers to measure"
    )
    args = parser.parse_args()
    try:
        import uvloop

        summary = uvloop.run(main(args))
    except ImportError:
        summary = asyncio.run(main(args))
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    cli()
