"""REST API benchmark: chronohub beside a real JupyterHub, same requests, same client.

Run with ``make bench-api``. Prints progress on stderr and one JSON line on stdout. Not a
test: nothing here asserts timing. Loopback only; every request loop stops by time and count.
What the benchmarks share (servers, readiness, stopping, the client's requests) is in
``bench/common.py``.

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

The floor: after chronohub, a bare aiohttp application (``bench/bare_app.py``: one process,
uvloop, no authentication, no database) answers the same three requests with a constant JSON
body of the size chronohub's answer had, measured by the same client in the same run;
``users_cpu_vs_bare``, ``whoami_cpu_vs_bare`` and ``token_create_cpu_vs_bare`` are chronohub's
server CPU per request over the bare app's (lower is better; targets 4.0, 2.0 and 4.0).

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
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp

from bench import common

SCOPES = ["admin:users", "tokens", "list:users", "read:users", "admin:servers", "read:hub"]
PAGINATION = "application/jupyterhub-pagination+json"
TOKEN_BODY = {"note": "bench", "expires_in": 3600}
WHOAMI_USERS = 8
CREATE_BATCH = 100  # users per POST /hub/api/users
MAX_REQUESTS = 500_000  # per measurement, whatever the duration
REQUEST_TIMEOUT = 60.0


def user_names(count: int) -> list[str]:
    return [f"u{i:04d}" for i in range(count)]


def start_chronohub(workdir: Path, token: str) -> common.Server:
    common.reachable(workdir)
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
    hub_port, public_port = common.free_port(), common.free_port()
    env = {k: v for k, v in os.environ.items() if k not in common.DATABASE_VARIABLES}
    env |= {"CHRONOHUB_DATA_DIR": str(workdir / "data"), "CHRONOHUB_CONFIG": str(config)}
    command = common.BIN_DIR / "chronohub"
    cmd = [
        str(command), "serve", "--ip", "127.0.0.1",
        "--port", str(public_port), "--hub-port", str(hub_port),
    ]  # fmt: skip
    # Requests go to the hub's own address, as JupyterHub's do (its hub_port), not through
    # either proxy: the hubs are compared, not their proxies.
    return common.spawn("chronohub", cmd, env, workdir, f"http://127.0.0.1:{hub_port}/hub/api")


# --- load ----------------------------------------------------------------------------------


async def run_load(
    session: aiohttp.ClientSession,
    make: Callable[[int], common.Call],
    concurrency: int,
    seconds: float,
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
    server: common.Server,
    make: Callable[[int], common.Call],
    args: argparse.Namespace,
) -> dict[str, Any]:
    await run_load(session, make, args.concurrency, args.warmup)
    cpu_before = common.server_cpu_seconds(server)
    client_before = time.process_time()
    latencies, failures, elapsed, sample = await run_load(
        session, make, args.concurrency, args.seconds
    )
    client_cpu = time.process_time() - client_before
    cpu_after = common.server_cpu_seconds(server)
    total = len(latencies) + sum(failures.values())
    if not latencies:
        raise common.StepError(f"no request succeeded ({dict(failures)}): {sample}")
    if failures:
        share = sum(failures.values()) / total
        if share > 0.01:
            raise common.StepError(
                f"{share:.0%} of {total} requests failed ({dict(failures)}): {sample}"
            )
    ordered = sorted(latencies)
    result: dict[str, Any] = {
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(common.quantile(ordered, 0.50) * 1000, 2),
        "p99_ms": round(common.quantile(ordered, 0.99) * 1000, 2),
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
        message = str(exc) if isinstance(exc, common.StepError) else f"{type(exc).__name__}: {exc}"
        common.log(f"  {label} {name}: FAILED: {message[:500]}")
        errors[f"{label}.{name}"] = message[:2000]


class Suite:
    """The measurements of one hub, and what went wrong along the way."""

    def __init__(
        self,
        label: str,
        session: aiohttp.ClientSession,
        server: common.Server,
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
            body = await common.expect(
                self.session,
                common.Call(
                    "POST",
                    f"{self.server.api}/users",
                    common.auth(self.token),
                    {"usernames": batch},
                    expected=201,
                ),
            )
            created = {user["name"] for user in body}
            if created != set(batch):
                raise common.StepError(
                    f"POST /users created {sorted(created)[:5]}..., not {batch[:5]}..."
                )
            self.users.extend(batch)
        common.log(f"  {self.label}: {len(self.users)} users ({time.perf_counter() - start:.1f} s)")

    async def create_user_tokens(self) -> None:
        for name in self.users[:WHOAMI_USERS]:
            body = await common.expect(self.session, self.token_call(name))
            self.user_tokens.append(body["token"])

    def users_call(self, i: int) -> common.Call:
        headers = common.auth(self.token, Accept=PAGINATION)
        return common.Call("GET", f"{self.server.api}/users?limit=50", headers)

    def whoami_call(self, i: int) -> common.Call:
        token = self.user_tokens[i % len(self.user_tokens)]
        return common.Call("GET", f"{self.server.api}/user", common.auth(token))

    def token_call(self, i: int | str) -> common.Call:
        name = i if isinstance(i, str) else self.users[i % len(self.users)]
        url = f"{self.server.api}/users/{name}/tokens"
        return common.Call("POST", url, common.auth(self.token), TOKEN_BODY, expected=201)

    async def body_bytes(self, kind: str) -> int:
        """The size of the answer to one request of ``kind``: the bare app answers as much."""
        make = {"users": self.users_call, "whoami": self.whoami_call}.get(kind, self.token_call)
        request = make(0)
        async with self.session.request(
            request.method, request.url, headers=request.headers, json=request.body
        ) as resp:
            return len(await resp.read())

    async def check(self, kind: str) -> None:
        """One request of ``kind`` whose answer is checked, so a fast wrong answer is no figure."""
        n = len(self.users)
        if kind == "users":
            body = await common.expect(self.session, self.users_call(0))
            names = [item["name"] for item in body["items"]]
            total = body["_pagination"]["total"]
            if len(names) != min(50, n) or total != n or names != self.users[: len(names)]:
                raise common.StepError(
                    f"users page: {len(names)} items, total {total}, for {n} users"
                )
        elif kind == "whoami":
            for i, name in enumerate(self.users[: len(self.user_tokens)]):
                body = await common.expect(self.session, self.whoami_call(i))
                if body.get("name") != name or body.get("kind") != "user":
                    raise common.StepError(f"whoami with {name}'s token: {str(body)[:300]}")
        else:
            body = await common.expect(self.session, self.token_call(0))
            if not body.get("token") or body.get("user") != self.users[0]:
                raise common.StepError(f"token created: {str(body)[:300]}")

    async def measure(self, kind: str, users: int) -> None:
        key = f"{kind}_{users}"
        self.figures[key] = None
        with self.step(key):
            if kind == "whoami" and not self.user_tokens:
                raise common.StepError("no user tokens (their creation failed)")
            if len(self.users) != users:
                raise common.StepError(f"{len(self.users)} users instead of {users}")
            await self.check(kind)
            self.figures.setdefault("body_bytes", {})[key] = await self.body_bytes(kind)
            make = {"users": self.users_call, "whoami": self.whoami_call}.get(kind, self.token_call)
            common.log(f"  {self.label}: {key}")
            figures = await measure(self.session, self.server, make, self.args)
            self.figures[key] = figures
            common.log(
                f"    {figures['rps']:.0f} req/s, p50 {figures['p50_ms']} ms,"
                f" p99 {figures['p99_ms']} ms, {figures['server_cpu_ms_per_req']} ms CPU/req"
            )

    async def run(self, kinds: tuple[str, ...], sizes: tuple[int, ...]) -> None:
        with self.step("ready"):
            seconds = await common.wait_ready(self.session, self.server)
            self.figures["ready_s"] = round(seconds, 1)
            common.log(f"  {self.label}: ready after {seconds:.1f} s")
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
    start: Callable[[Path, str], common.Server],
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
    common.log(f"{label}: starting")
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
            common.log(f"{label}: stopping")
            common.stop(server)
        if own_dir and not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def start_bare(workdir: Path, sizes: dict[str, int]) -> common.Server:
    """``bench/bare_app.py`` on a free port, answering ``sizes`` bytes per route kind."""
    port = common.free_port()
    env = dict(os.environ) | {"BENCH_BARE_SIZES": json.dumps(sizes)}
    cmd = [sys.executable, "-m", "bench.bare_app", str(port)]
    env["PYTHONPATH"] = str(common.BENCH_DIR.parent)
    return common.spawn("bare", cmd, env, workdir, f"http://127.0.0.1:{port}/hub/api")


async def bench_bare(
    session: aiohttp.ClientSession,
    chronohub: dict[str, Any],
    users: list[str],
    args: argparse.Namespace,
    errors: dict[str, str],
) -> dict[str, Any]:
    """The bare aiohttp app, answering as many bytes as chronohub did, measured as it was:
    the same client, concurrency, warm-up and duration, the same URLs and request bodies."""
    figures: dict[str, Any] = {}
    sizes_by_key = chronohub.get("body_bytes", {})
    for size in (args.small_users, args.users):
        sizes = {kind: sizes_by_key.get(f"{kind}_{size}") for kind in KINDS}
        if None in sizes.values() or not users:
            errors[f"bare.{size}"] = "chronohub's answers were not measured: no size to match"
            continue
        root = Path(tempfile.mkdtemp(prefix="bare-bench-"))
        server = None
        ready = False
        try:
            with step(errors, "bare", f"start_{size}"):
                server = start_bare(root, {k: int(v) for k, v in sizes.items() if v})
                await common.wait_ready(session, server)
                ready = True
            if server is None or not ready:
                continue
            suite = Suite("bare", session, server, "bare", args, errors)
            suite.users = users[:size]
            suite.user_tokens = ["bare"]
            for kind in KINDS:
                key = f"{kind}_{size}"
                figures[key] = None
                with step(errors, "bare", key):
                    make = {"users": suite.users_call, "whoami": suite.whoami_call}.get(
                        kind, suite.token_call
                    )
                    common.log(f"  bare: {key} ({sizes[kind]} bytes)")
                    figures[key] = await measure(session, server, make, args)
                    common.log(
                        f"    {figures[key]['rps']:.0f} req/s,"
                        f" {figures[key]['server_cpu_ms_per_req']} ms CPU/req"
                    )
        finally:
            if server is not None:
                common.stop(server)
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
    return figures


def ratio(a: dict[str, Any], b: dict[str, Any], key: str, metric: str = "rps") -> float | None:
    x, y = a.get(key), b.get(key)
    if not x or not y or not x.get(metric) or not y.get(metric):
        return None
    return round(x[metric] / y[metric], 3)


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
    bare: dict[str, Any] = {}
    default_rounds: dict[str, Any] = {}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if args.only in ("both", "chronohub"):
            chronohub, names = await bench_server(
                "chronohub", start_chronohub, session, args, errors
            )
            if args.bare:
                bare = await bench_bare(session, chronohub, names, args, errors)
        if args.only in ("both", "jupyterhub"):
            root = Path(tempfile.mkdtemp(prefix="jupyterhub-bench-"))
            try:
                trusted, users = await bench_server(
                    "jupyterhub",
                    lambda d, t: common.start_jupyterhub(d, t, trust_tokens=True),
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
                        lambda d, t: common.start_jupyterhub(d, t, trust_tokens=False),
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
        # chronohub's server CPU per request over the bare aiohttp app's (lower is better):
        # what authentication, scopes, the database and the JSON cost above the framework
        **{
            f"{kind}_cpu_vs_bare{suffix}": ratio(
                chronohub, bare, f"{kind}_{size}", "server_cpu_ms_per_req"
            )
            for size, suffix in ((big, ""), (small, f"_{small}"))
            for kind in KINDS
        },
        "cpu_ratios": {
            f"{kind}_{size}": ratio(trusted, chronohub, f"{kind}_{size}", "server_cpu_ms_per_req")
            for size in (big, small)
            for kind in KINDS
        },
        "chronohub": chronohub,
        "jupyterhub": trusted,
        "jupyterhub_default_rounds": default_rounds,
        "bare": bare,
        "jupyterhub_version": common.jupyterhub_version(),
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
        " CPU per request over chronohub's; *_cpu_vs_bare: chronohub's server CPU per request"
        " over a bare aiohttp app's answering as many bytes (bench/bare_app.py)",
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
    parser.add_argument(
        "--no-bare",
        dest="bare",
        action="store_false",
        help="skip the bare aiohttp application (the *_cpu_vs_bare floor)",
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
        common.log("interrupted")
        sys.exit(130)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    cli()
