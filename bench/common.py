"""What the benchmarks share: starting, watching and stopping chronohub and JupyterHub
servers, waiting until they answer, and the HTTP client's requests.

``bench/rest_api.py`` (``make bench-api``) is its first user; ``bench/spawn_proxy.py`` and
``bench/collab.py`` use the servers, readiness and stopping.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

BENCH_DIR = Path(__file__).resolve().parent
BIN_DIR = Path(sys.executable).parent
JUPYTERHUB_CONFIG = BENCH_DIR / "jupyterhub_config.py"
CHP_COMMAND = BENCH_DIR / "node_modules" / ".bin" / "configurable-http-proxy"
READY_TIMEOUT = 180.0
STOP_TIMEOUT = 20.0
LOG_TAIL = 1500
# Variables that would point chronohub at another database than its embedded one.
DATABASE_VARIABLES = ("CHRONOHUB_DATABASE_URL", "DATABASE_URL", "PGHOST", "PGDATABASE")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class StepError(Exception):
    """A step of the benchmark went wrong; the message says how."""


# --- servers -------------------------------------------------------------------------------


@dataclass
class Server:
    """A hub running as a subprocess, its API root, and what it needs to be stopped."""

    label: str
    proc: subprocess.Popen[bytes]
    api: str  # http://127.0.0.1:<port>/hub/api
    workdir: Path
    log_path: Path
    log_file: Any = field(repr=False)

    def log_tail(self) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-LOG_TAIL:].strip()


def spawn(label: str, cmd: list[str], env: dict[str, str], workdir: Path, api: str) -> Server:
    log_path = workdir / f"{label}.log"
    log_file = log_path.open("wb")
    proc = subprocess.Popen(
        cmd,
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a ^C to the benchmark reaches the servers only through stop()
    )
    return Server(label, proc, api, workdir, log_path, log_file)


def reachable(path: Path) -> Path:
    """``path``, with it and every directory above it passable by other accounts (``o+x``,
    not listable): a root hub's embedded PostgreSQL runs as an account of its own, which must
    reach the data directory inside (a temporary directory is closed to others)."""
    for step in [*path.parents, path]:
        mode = step.stat().st_mode
        if not mode & stat.S_IXOTH:
            step.chmod(mode | stat.S_IXOTH)
    return path


def start_jupyterhub(workdir: Path, token: str, *, trust_tokens: bool) -> Server:
    if not CHP_COMMAND.exists():
        raise StepError(
            f"{CHP_COMMAND} is missing: JupyterHub needs configurable-http-proxy;"
            " run `npm install --prefix bench` (`make bench-api` does)"
        )
    hub_port, proxy_port, proxy_api_port = free_port(), free_port(), free_port()
    env = dict(os.environ)
    env |= {
        "BENCH_HUB_PORT": str(hub_port),
        "BENCH_PROXY_PORT": str(proxy_port),
        "BENCH_PROXY_API_PORT": str(proxy_api_port),
        "BENCH_CHP_COMMAND": str(CHP_COMMAND),
        "BENCH_SERVICE_TOKEN": token,
        "BENCH_TRUST_TOKENS": "1" if trust_tokens else "0",
    }
    env.pop("CONFIGPROXY_AUTH_TOKEN", None)
    command = BIN_DIR / "jupyterhub"
    cmd = [str(command), "-f", str(JUPYTERHUB_CONFIG)]
    return spawn("jupyterhub", cmd, env, workdir, f"http://127.0.0.1:{hub_port}/hub/api")


def related_processes(server: Server) -> list[Any]:
    """The server process, its descendants, and processes that name its directory (the
    embedded PostgreSQL, which pg_ctl detaches) with theirs; ``[]`` without psutil."""
    try:
        import psutil
    except ImportError:
        return []
    found: dict[int, Any] = {}

    def add(proc: Any) -> None:
        found[proc.pid] = proc
        try:
            for child in proc.children(recursive=True):
                found[child.pid] = child
        except psutil.Error:
            pass

    with suppress(psutil.Error):
        add(psutil.Process(server.proc.pid))
    marker = str(server.workdir)
    for proc in psutil.process_iter(["cmdline"]):
        if proc.pid not in found and any(marker in part for part in proc.info["cmdline"] or ()):
            add(proc)
    return list(found.values())


def server_cpu_seconds(server: Server) -> float | None:
    """User + system CPU time of the server's processes, reaped children included."""
    procs = related_processes(server)
    if not procs:
        return None
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except Exception:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def stop(server: Server) -> None:
    """SIGTERM, SIGKILL after ``STOP_TIMEOUT``; then the same for anything it left running."""
    leftovers = [p for p in related_processes(server) if p.pid != server.proc.pid]
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log(f"{server.label} did not stop in {STOP_TIMEOUT:.0f} s: SIGKILL")
            server.proc.kill()
            server.proc.wait()
    server.log_file.close()
    alive = []
    for proc in leftovers:
        try:
            if proc.is_running():
                proc.terminate()
                alive.append(proc)
        except Exception:
            continue
    if alive:
        import psutil

        _, still = psutil.wait_procs(alive, timeout=STOP_TIMEOUT)
        for proc in still:
            with suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(still, timeout=5)


async def wait_ready(session: aiohttp.ClientSession, server: Server) -> float:
    """Poll ``GET /hub/api/`` until it answers 200; the seconds that took."""
    start = time.perf_counter()
    last = "no answer"
    while time.perf_counter() - start < READY_TIMEOUT:
        if server.proc.poll() is not None:
            raise StepError(
                f"{server.label} exited with {server.proc.returncode} before answering;"
                f" its output ends: {server.log_tail()}"
            )
        try:
            async with session.get(
                server.api + "/", timeout=aiohttp.ClientTimeout(total=5)
            ) as resp:
                if resp.status == 200:
                    return time.perf_counter() - start
                last = f"status {resp.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            last = type(exc).__name__
        await asyncio.sleep(0.2)
    raise StepError(f"{server.label} not ready after {READY_TIMEOUT:.0f} s ({last})")


# --- the client ----------------------------------------------------------------------------


@dataclass
class Call:
    method: str
    url: str
    headers: dict[str, str]
    body: Any = None
    expected: int = 200


def auth(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"token {token}", **headers}


async def call(session: aiohttp.ClientSession, request: Call) -> tuple[int, Any]:
    """One request; its status and JSON body (``None`` when the body is not JSON)."""
    async with session.request(
        request.method, request.url, headers=request.headers, json=request.body
    ) as resp:
        raw = await resp.read()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw.decode(errors="replace")[:300]


async def expect(session: aiohttp.ClientSession, request: Call) -> Any:
    status, body = await call(session, request)
    if status != request.expected:
        raise StepError(
            f"{request.method} {request.url} answered {status} (expected {request.expected}):"
            f" {str(body)[:300]}"
        )
    return body


def quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def jupyterhub_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("jupyterhub")
    except Exception:
        return None
