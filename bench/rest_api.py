"""REST API benchmark: chronohub beside a real JupyterHub, same requests, same client.

Run with ``make bench-api``. Prints progress on stderr and one JSON line on stdout. Not a
test: nothing here asserts timing. Loopback only; every request loop stops by time and count.
It is also what the other benchmarks share (servers, readiness, stopping), hence its length
(about 750 lines): a ``bench/common.py`` would be the seam to split along.

The servers, one after the other (never both at once: the machine has 2 cores, and the
client needs one of them):

* chronohub: ``chronohub serve --ip 127.0.0.1 --port <free> --hub-port <free>``, requests
  sent to the hub's own port (as JupyterHub's are), with ``CHRONOHUB_DATA_DIR`` in a
  temporary directory (it starts its own embedded PostgreSQL there) and
  ``CHRONOHUB_CONFIG`` naming a TOML file with the service ``bench``, its ``api_token``, and a
  role granting it the scopes below.
* JupyterHub, the ``jupyterhub`` package: ``jupyterhub -f bench/jupyterhub_config.py`` in a
  temporary directory (sqlite there), hub, proxy and proxy API on free loopback ports, the
  same service, token and role through ``c.JupyterHub.services`` and ``load_roles``, the dummy
  authenticator and the simple spawner (nothing is spawned).

  The proxy: JupyterHub starts configurable-http-proxy (node) by default and refuses to run
  when it cannot reach one. The benchmark keeps that stock setup and installs the proxy from
  ``bench/package.json`` (``npm install --prefix bench``, done by ``make bench-api``) rather
  than replacing it with a custom in-memory ``Proxy`` class: the hub then runs as deployed
  (the proxy is started, checked and given its routes), and requests still go straight to
  the hub's own port, as in the reference measurements, so the proxy is not in their path.

  Tokens: the hub stores a token from its config file hashed like a password (16384 rounds
  of salted SHA-512, checked on every request) unless ``trust_user_provided_tokens`` is set,
  which makes it one round like the tokens the hub generates. JupyterHub is measured with
  both: first ``trust_user_provided_tokens = True`` (JupyterHub at its fastest; the headline
  ratios are against this), then restarted on the same database with a new service token
  and the default ``False`` for the two requests the service token authenticates (list
  users, create token), with 1,000 users. Whoami is measured with user tokens, which the hub
  generates (one round) either way.

The client: one aiohttp ``ClientSession``, 32 concurrent workers (``--concurrency``), each
request timed with ``time.perf_counter``; each measurement is a 1 s warm-up, discarded, then
5 s counted (``--warmup``, ``--seconds``), at most ``MAX_REQUESTS`` requests. Measured, with
10 users and then with 1,000 (created through ``POST /hub/api/users``):

* ``GET /hub/api/users?limit=50`` with ``Accept: application/jupyterhub-pagination+json``
  (the first page), service token;
* ``GET /hub/api/user`` (whoami) with user tokens, as HubAuth calls it: one token per user
  for the first ``WHOAMI_USERS`` users, created with ``POST /hub/api/users/{name}/tokens``;
* ``POST /hub/api/users/{name}/tokens`` with ``{"note": "bench", "expires_in": 3600}``,
  service token, the user name rotating over all users.

Each figure: requests/s of answers with the expected status, p50 and p99 latency, the count
of requests, and the server's CPU time per request (the server process and its descendants,
for chronohub also its PostgreSQL, from the process CPU counters: steadier than requests/s on
a shared machine), and the benchmark's own CPU per request (client and server share the two
cores: when ``client_cpu_ms_per_req`` nears the server's, the client bounds requests/s, and
the CPU figures are the ones to compare). Ratios are chronohub's requests/s over
JupyterHub's, so above 1 means chronohub is faster; ``cpu_ratios`` are JupyterHub's server CPU
per request over chronohub's (above 1: chronohub is cheaper).

Before each measurement one request of its kind is checked (status, and the page, user or
token it returns), so that a fast wrong answer gives no figure. A step that fails (a server
that does not start, an endpoint that answers something else) leaves its figures ``null``
and says why under ``errors``; the rest still runs.
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
import stat
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

BENCH_DIR = Path(__file__).resolve().parent
BIN_DIR = Path(sys.executable).parent
JUPYTERHUB_CONFIG = BENCH_DIR / "jupyterhub_config.py"
CHP_COMMAND = BENCH_DIR / "node_modules" / ".bin" / "configurable-http-proxy"

SCOPES = ["admin:users", "tokens", "list:users", "read:users", "admin:servers", "read:hub"]
PAGINATION = "application/jupyterhub-pagination+json"
TOKEN_BODY = {"note": "bench", "expires_in": 3600}
WHOAMI_USERS = 8
CREATE_BATCH = 100  # users per POST /hub/api/users
MAX_REQUESTS = 500_000  # per measurement, whatever the duration
REQUEST_TIMEOUT = 60.0
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


def user_names(count: int) -> list[str]:
    return [f"u{i:04d}" for i in range(count)]


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
    """``path``, with every directory above it passable by other accounts (``o+x``): a root
    hub's embedded PostgreSQL runs as an account of its own, which must reach the data
    directory inside (a temporary directory is closed to others)."""
    for step in path.parents:
        mode = step.stat().st_mode
        if not mode & stat.S_IXOTH:
            step.chmod(mode | stat.S_IXOTH)
    return path


def start_chronohub(workdir: Path, token: str) -> Server:
    reachable(workdir)
    config = workdir / "chronohub.toml"
    config.write_text(
        "[[services]]\n"
        'name = "bench"\n'
        f'api_token = "{token}"\n'
        "\n"
        "[[roles]]\n"
        'name = "bench-role"\n'
        f"scopes = {json.dumps(SCOPES)}\n"
        'services = ["bench"]\n'
    )
    hub_port, public_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in DATABASE_VARIABLES}
    env |= {"CHRONOHUB_DATA_DIR": str(workdir / "data"), "CHRONOHUB_CONFIG": str(config)}
    command = BIN_DIR / "chronohub"
    cmd = [
        str(command), "serve", "--ip", "127.0.0.1",
        "--port", str(public_port), "--hub-port", str(hub_port),
    ]  # fmt: skip
    # Requests go to the hub's own address, as JupyterHub's do (its hub_port), not through
    # either proxy: the hubs are compared, not their proxies.
    return spawn("chronohub", cmd, env, workdir, f"http://127.0.0.1:{hub_port}/hub/api")


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


async def run_load(
    session: aiohttp.ClientSession, make: Callable[[int], Call], concurrency: int, seconds: float
) -> tuple[list[float], Counter[str], float, str | None]:
    """``concurrency`` workers issue ``make(i)`` for ``seconds``; latencies (s) of expected
    answers, a count of the others by status, the elapsed time, and one unexpected answer."""
    latencies: list[float] = []
    failures: Counter[str] = Counter()
    sample: list[str] = []
    issued = 0
    deadline = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal issued
        i = w
        while time.perf_counter() < deadline and issued < MAX_REQUESTS:
            issued += 1
            request = make(i)
            i += concurrency
            t0 = time.perf_counter()
            try:
                async with session.request(
                    request.method, request.url, headers=request.headers, json=request.body
                ) as resp:
                    raw = await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                failures[type(exc).__name__] += 1
                if not sample:
                    sample.append(f"{request.method} {request.url}: {exc!r}")
                continue
            elapsed = time.perf_counter() - t0
            if status == request.expected:
                latencies.append(elapsed)
            else:
                failures[str(status)] += 1
                if not sample:
                    text = raw[:300].decode(errors="replace")
                    sample.append(f"{request.method} {request.url} answered {status}: {text}")

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return latencies, failures, time.perf_counter() - start, sample[0] if sample else None


async def measure(
    session: aiohttp.ClientSession,
    server: Server,
    make: Callable[[int], Call],
    args: argparse.Namespace,
) -> dict[str, Any]:
    await run_load(session, make, args.concurrency, args.warmup)
    cpu_before = server_cpu_seconds(server)
    client_before = time.process_time()
    latencies, failures, elapsed, sample = await run_load(
        session, make, args.concurrency, args.seconds
    )
    client_cpu = time.process_time() - client_before
    cpu_after = server_cpu_seconds(server)
    total = len(latencies) + sum(failures.values())
    if not latencies:
        raise StepError(f"no request succeeded ({dict(failures)}): {sample}")
    if failures:
        share = sum(failures.values()) / total
        if share > 0.01:
            raise StepError(f"{share:.0%} of {total} requests failed ({dict(failures)}): {sample}")
    ordered = sorted(latencies)
    result: dict[str, Any] = {
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(quantile(ordered, 0.50) * 1000, 2),
        "p99_ms": round(quantile(ordered, 0.99) * 1000, 2),
        "requests": total,
        "server_cpu_ms_per_req": (
            round((cpu_after - cpu_before) * 1000 / total, 3)
            if cpu_before is not None and cpu_after is not None
            else None
        ),
        "client_cpu_ms_per_req": round(client_cpu * 1000 / total, 3),
    }
    if failures:
        result["failed"] = dict(failures)
    return result


# --- one hub through its API ---------------------------------------------------------------


@contextmanager
def step(errors: dict[str, str], label: str, name: str) -> Iterator[None]:
    """Run a step; if it fails, say why under ``errors`` and go on."""
    try:
        yield
    except Exception as exc:  # a server's wrong answer can break any line of a step
        message = str(exc) if isinstance(exc, StepError) else f"{type(exc).__name__}: {exc}"
        log(f"  {label} {name}: FAILED: {message[:500]}")
        errors[f"{label}.{name}"] = message[:2000]


class Suite:
    """The measurements of one hub, and what went wrong along the way."""

    def __init__(
        self,
        label: str,
        session: aiohttp.ClientSession,
        server: Server,
        token: str,
        args: argparse.Namespace,
        errors: dict[str, str],
    ) -> None:
        self.label = label
        self.session = session
        self.server = server
        self.token = token
        self.args = args
        self.errors = errors
        self.figures: dict[str, Any] = {}
        self.users: list[str] = []
        self.user_tokens: list[str] = []

    def step(self, name: str) -> AbstractContextManager[None]:
        return step(self.errors, self.label, name)

    async def create_users(self, count: int) -> None:
        new = user_names(count)[len(self.users) :]
        start = time.perf_counter()
        for i in range(0, len(new), CREATE_BATCH):
            batch = new[i : i + CREATE_BATCH]
            body = await expect(
                self.session,
                Call(
                    "POST",
                    f"{self.server.api}/users",
                    auth(self.token),
                    {"usernames": batch},
                    expected=201,
                ),
            )
            created = {user["name"] for user in body}
            if created != set(batch):
                raise StepError(f"POST /users created {sorted(created)[:5]}..., not {batch[:5]}...")
            self.users.extend(batch)
        log(f"  {self.label}: {len(self.users)} users ({time.perf_counter() - start:.1f} s)")

    async def create_user_tokens(self) -> None:
        for name in self.users[:WHOAMI_USERS]:
            body = await expect(self.session, self.token_call(name))
            self.user_tokens.append(body["token"])

    def users_call(self, i: int) -> Call:
        headers = auth(self.token, Accept=PAGINATION)
        return Call("GET", f"{self.server.api}/users?limit=50", headers)

    def whoami_call(self, i: int) -> Call:
        token = self.user_tokens[i % len(self.user_tokens)]
        return Call("GET", f"{self.server.api}/user", auth(token))

    def token_call(self, i: int | str) -> Call:
        name = i if isinstance(i, str) else self.users[i % len(self.users)]
        url = f"{self.server.api}/users/{name}/tokens"
        return Call("POST", url, auth(self.token), TOKEN_BODY, expected=201)

    async def check(self, kind: str) -> None:
        """One request of ``kind`` whose answer is checked, so a fast wrong answer is no figure."""
        n = len(self.users)
        if kind == "users":
            body = await expect(self.session, self.users_call(0))
            names = [item["name"] for item in body["items"]]
            total = body["_pagination"]["total"]
            if len(names) != min(50, n) or total != n or names != self.users[: len(names)]:
                raise StepError(f"users page: {len(names)} items, total {total}, for {n} users")
        elif kind == "whoami":
            for i, name in enumerate(self.users[: len(self.user_tokens)]):
                body = await expect(self.session, self.whoami_call(i))
                if body.get("name") != name or body.get("kind") != "user":
                    raise StepError(f"whoami with {name}'s token: {str(body)[:300]}")
        else:
            body = await expect(self.session, self.token_call(0))
            if not body.get("token") or body.get("user") != self.users[0]:
                raise StepError(f"token created: {str(body)[:300]}")

    async def measure(self, kind: str, users: int) -> None:
        key = f"{kind}_{users}"
        self.figures[key] = None
        with self.step(key):
            if kind == "whoami" and not self.user_tokens:
                raise StepError("no user tokens (their creation failed)")
            if len(self.users) != users:
                raise StepError(f"{len(self.users)} users instead of {users}")
            await self.check(kind)
            make = {"users": self.users_call, "whoami": self.whoami_call}.get(kind, self.token_call)
            log(f"  {self.label}: {key}")
            figures = await measure(self.session, self.server, make, self.args)
            self.figures[key] = figures
            log(
                f"    {figures['rps']:.0f} req/s, p50 {figures['p50_ms']} ms,"
                f" p99 {figures['p99_ms']} ms, {figures['server_cpu_ms_per_req']} ms CPU/req"
            )

    async def run(self, kinds: tuple[str, ...], sizes: tuple[int, ...]) -> None:
        with self.step("ready"):
            seconds = await wait_ready(self.session, self.server)
            self.figures["ready_s"] = round(seconds, 1)
            log(f"  {self.label}: ready after {seconds:.1f} s")
        if "ready_s" not in self.figures:
            return
        for size in sizes:
            with self.step(f"create_users_{size}"):
                await self.create_users(size)
            if "whoami" in kinds and not self.user_tokens:
                with self.step("create_user_tokens"):
                    await self.create_user_tokens()
            for kind in kinds:
                await self.measure(kind, size)
            if self.server.proc.poll() is not None:
                self.errors[f"{self.label}.exited"] = self.server.log_tail()
                return


# --- the run -------------------------------------------------------------------------------

KINDS = ("users", "whoami", "token_create")


async def bench_server(
    label: str,
    start: Callable[[Path, str], Server],
    session: aiohttp.ClientSession,
    args: argparse.Namespace,
    errors: dict[str, str],
    kinds: tuple[str, ...] = KINDS,
    sizes: tuple[int, ...] | None = None,
    workdir: Path | None = None,
    users: list[str] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Start a hub, measure it, stop it; its figures and the users it has."""
    own_dir = workdir is None
    root = workdir or Path(tempfile.mkdtemp(prefix=f"{label}-bench-"))
    token = secrets.token_hex(32)
    log(f"{label}: starting")
    server = None
    suite = None
    try:
        with step(errors, label, "start"):
            server = start(root, token)
        if server is None:
            return {}, []
        suite = Suite(label, session, server, token, args, errors)
        suite.users = list(users or [])
        await suite.run(kinds, sizes or (args.small_users, args.users))
        return suite.figures, suite.users
    finally:
        if server is not None:
            log(f"{label}: stopping")
            stop(server)
        if own_dir and not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def ratio(a: dict[str, Any], b: dict[str, Any], key: str, metric: str = "rps") -> float | None:
    x, y = a.get(key), b.get(key)
    if not x or not y or not x.get(metric) or not y.get(metric):
        return None
    return round(x[metric] / y[metric], 3)


def jupyterhub_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("jupyterhub")
    except Exception:
        return None


async def main(args: argparse.Namespace) -> dict[str, Any]:
    # SIGTERM (and ^C, through asyncio) cancel the run: the servers still stop in ``finally``.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    errors: dict[str, str] = {}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    chronohub: dict[str, Any] = {}
    trusted: dict[str, Any] = {}
    default_rounds: dict[str, Any] = {}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if args.only in ("both", "chronohub"):
            chronohub, _ = await bench_server("chronohub", start_chronohub, session, args, errors)
        if args.only in ("both", "jupyterhub"):
            root = Path(tempfile.mkdtemp(prefix="jupyterhub-bench-"))
            try:
                trusted, users = await bench_server(
                    "jupyterhub",
                    lambda d, t: start_jupyterhub(d, t, trust_tokens=True),
                    session,
                    args,
                    errors,
                    workdir=root,
                )
                if args.default_rounds and len(users) == args.users:
                    # The same database, restarted with a new service token from the config
                    # file, hashed with JupyterHub's default 16384 rounds this time.
                    default_rounds, _ = await bench_server(
                        "jupyterhub_default_rounds",
                        lambda d, t: start_jupyterhub(d, t, trust_tokens=False),
                        session,
                        args,
                        errors,
                        kinds=("users", "token_create"),
                        sizes=(args.users,),
                        workdir=root,
                        users=users,
                    )
            finally:
                if not args.keep:
                    shutil.rmtree(root, ignore_errors=True)

    big, small = args.users, args.small_users
    result: dict[str, Any] = {
        "users_ratio": ratio(chronohub, trusted, f"users_{big}"),
        "whoami_ratio": ratio(chronohub, trusted, f"whoami_{big}"),
        "token_create_ratio": ratio(chronohub, trusted, f"token_create_{big}"),
        f"users_ratio_{small}": ratio(chronohub, trusted, f"users_{small}"),
        f"whoami_ratio_{small}": ratio(chronohub, trusted, f"whoami_{small}"),
        f"token_create_ratio_{small}": ratio(chronohub, trusted, f"token_create_{small}"),
        "users_ratio_vs_default_rounds": ratio(chronohub, default_rounds, f"users_{big}"),
        "token_create_ratio_vs_default_rounds": ratio(
            chronohub, default_rounds, f"token_create_{big}"
        ),
        "cpu_ratios": {
            f"{kind}_{size}": ratio(trusted, chronohub, f"{kind}_{size}", "server_cpu_ms_per_req")
            for size in (big, small)
            for kind in KINDS
        },
        "chronohub": chronohub,
        "jupyterhub": trusted,
        "jupyterhub_default_rounds": default_rounds,
        "jupyterhub_version": jupyterhub_version(),
        "jupyterhub_trust_user_provided_tokens": True,
        "jupyterhub_setup": (
            "sqlite, dummy authenticator, simple spawner, configurable-http-proxy started by"
            " the hub, requests to the hub port; 'jupyterhub' with trust_user_provided_tokens"
            " = True (service token 1 round); 'jupyterhub_default_rounds' the same database"
            " restarted with a new service token and the default False (16384 rounds)"
        ),
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "warmup_seconds": args.warmup,
        "users": big,
        "small_users": small,
        "ratio_of": "requests/s, chronohub over JupyterHub; cpu_ratios: JupyterHub's server"
        " CPU per request over chronohub's",
        "errors": errors,
    }
    return result


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each measurement")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up before each")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients")
    parser.add_argument("--users", type=int, default=1000, help="users for the headline")
    parser.add_argument("--small-users", type=int, default=10, help="users, first round")
    parser.add_argument(
        "--only",
        choices=["both", "chronohub", "jupyterhub"],
        default="both",
        help="which hubs to measure",
    )
    parser.add_argument(
        "--no-default-rounds",
        dest="default_rounds",
        action="store_false",
        help="skip JupyterHub with its default token hashing",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    args = parser.parse_args()
    if args.small_users >= args.users or args.small_users < WHOAMI_USERS:
        parser.error(f"need {WHOAMI_USERS} <= --small-users < --users")
    try:
        import uvloop
    except ImportError:
        run: Callable[[Any], dict[str, Any]] = asyncio.run
    else:
        run = uvloop.run
    try:
        result = run(main(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        log("interrupted")
        sys.exit(130)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    cli()
