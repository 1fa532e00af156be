"""Spawn and proxy benchmark: chronohub beside a real JupyterHub and configurable-http-proxy.

Run with ``make bench-spawn``. Progress goes to stderr, one JSON line to stdout. Not a test:
nothing here asserts timing. Loopback only. The machine's 2 cores are shared by the hub,
the proxy, the backend and this client (and, while other work runs, by that too): figures
are noisy, ratios from one run steadier than absolute numbers.

(a) Hub overhead per spawn. The spawner command of both hubs is ``bench/tiny_server.py`` (an
    aiohttp single-user stand-in that answers every path). For each hub, ``--spawns`` times:
    a *bare* start (the command started directly with the spawner environment, the time
    until ``{url}api`` first answers, polled every millisecond), right before the spawn so
    that both see the same load on the shared machine; then the time from
    ``POST /hub/api/users/{name}/server`` to its ``201`` (both hubs answer 201 only once the
    server answered their readiness check and has its proxy route); then the server is
    stopped. Overhead = the median of (POST to 201 - the bare start before it).

    chronohub: ``chronohub serve`` (its own embedded PostgreSQL, built-in proxy on the public
    ``--port``, the API called at the hub's own ``--hub-port`` as JupyterHub's is), the local
    process spawner. JupyterHub 6: ``jupyterhub -f bench/jupyterhub_config.py`` with the
    ``simple`` spawner (local processes) and configurable-http-proxy from ``bench/node_modules``.

(b) Proxy throughput. One backend, the tiny server chronohub spawned for user ``bench``
    (1 KB answers). The built-in proxy (in the ``chronohub serve`` process, routing
    ``/user/bench/`` to it) and a configurable-http-proxy started by this script with one
    route to the same backend, each loaded by this script's lean keep-alive HTTP/1.1 client
    (raw asyncio streams on uvloop: a few tens of µs per request, so the proxies, not the
    client, are measured) with 1 and 32 connections, ``--seconds`` each after a 1 s warm-up,
    in two rounds in opposite orders; the figures are the mean of the rounds. For each:
    requests/s, p50 and p99 latency, and the proxy process's CPU time per request. The same
    client straight to the backend gives the ceiling (``direct_to_backend``). Only answers
    with status 200 and the full 1 KB body count.

Output keys: ``spawn_overhead_ms``, ``jupyterhub_spawn_overhead_ms``,
``spawn_overhead_vs_jupyterhub`` (chronohub's overhead over JupyterHub's: below 1 is better),
``proxy_vs_chp_c1`` and ``proxy_vs_chp_c32`` (built-in requests/s over CHP's: above 1 is
better), and the details under ``spawn`` and ``proxy``; steps that fail leave ``null`` and say
why under ``errors``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp

from bench import common  # servers, stopping, readiness

BENCH_DIR = Path(__file__).resolve().parent
TINY_SERVER = BENCH_DIR / "tiny_server.py"
SCOPES = ["admin:users", "admin:servers", "read:hub"]
PROXY_PATH = "/user/bench/hello"


def log(message: str) -> None:
    common.log(message)


# --- (a) spawn overhead ----------------------------------------------------------------------


async def bare_start(session: aiohttp.ClientSession, workdir: Path) -> float:
    """Seconds from exec to the first answer of ``{url}api``, the tiny server started by hand."""
    port = common.free_port()
    url = f"http://127.0.0.1:{port}/user/bare/"
    env = {**os.environ, "JUPYTERHUB_SERVICE_URL": url}
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(TINY_SERVER)], env=env, cwd=workdir, start_new_session=True
    )
    try:
        while True:
            try:
                async with session.get(url + "api") as response:
                    if response.status < 500:
                        return time.perf_counter() - start
            except aiohttp.ClientError:
                pass
            if time.perf_counter() - start > 30:
                raise common.StepError("the tiny server did not answer within 30 s")
            await asyncio.sleep(0.001)
    finally:
        proc.terminate()
        proc.wait()


async def spawn_times(
    session: aiohttp.ClientSession, api: str, token: str, names: list[str], workdir: Path
) -> tuple[list[float], list[float]]:
    """Per user: seconds from POST .../server to its 201 (the server stopped after), and a
    bare start of the same command right before it, so that both see the same load."""
    headers = common.auth(token)
    timings, bare = [], []
    for name in names:
        bare.append(await bare_start(session, workdir / f"bare-{name}"))
        start = time.perf_counter()
        async with session.post(f"{api}/users/{name}/server", headers=headers) as response:
            text = await response.text()
            if response.status != 201:
                raise common.StepError(f"POST /users/{name}/server: {response.status} {text}")
        timings.append(time.perf_counter() - start)
        async with session.delete(f"{api}/users/{name}/server", headers=headers) as response:
            if response.status not in (202, 204):
                raise common.StepError(f"DELETE /users/{name}/server: {response.status}")
        await wait_stopped(session, api, headers, name)
    return timings, bare


async def wait_stopped(
    session: aiohttp.ClientSession, api: str, headers: dict[str, str], name: str
) -> None:
    for _ in range(300):
        async with session.get(f"{api}/users/{name}", headers=headers) as response:
            user = await response.json()
        if not user.get("servers"):
            return
        await asyncio.sleep(0.05)
    raise common.StepError(f"{name}'s server did not stop")


async def create_users(
    session: aiohttp.ClientSession, api: str, token: str, names: list[str]
) -> None:
    async with session.post(
        f"{api}/users", headers=common.auth(token), json={"usernames": names}
    ) as response:
        if response.status != 201:
            raise common.StepError(f"POST /users: {response.status} {await response.text()}")


def start_chronohub(workdir: Path, token: str) -> tuple[common.Server, int]:
    common.reachable(workdir)
    config = workdir / "chronohub.toml"
    proxy_port = common.free_port()
    config.write_text(
        f"spawner_cmd = {json.dumps([sys.executable, str(TINY_SERVER)])}\n"
        "slow_spawn_timeout = 60\n"
        # As JupyterHub's simple spawner here: servers run as the hub's own account, which
        # measures the hub's own overhead, not useradd's (as root, chronohub would run each
        # as a system account of its own; see the README's figures for that).
        "single_user_mode = true\n"
        "single_user_mode_all_users = true\n"
        "\n[[services]]\n"
        'name = "bench"\n'
        f'api_token = "{token}"\n'
        "\n[[roles]]\n"
        'name = "bench-role"\n'
        f"scopes = {json.dumps(SCOPES)}\n"
        'services = ["bench"]\n'
    )
    hub_port = common.free_port()
    env = {k: v for k, v in os.environ.items() if k not in common.DATABASE_VARIABLES}
    env |= {"CHRONOHUB_DATA_DIR": str(workdir / "data"), "CHRONOHUB_CONFIG": str(config)}
    cmd = [
        str(common.BIN_DIR / "chronohub"), "serve", "--ip", "127.0.0.1",
        "--port", str(proxy_port), "--hub-port", str(hub_port),
    ]  # fmt: skip
    # The API at the hub's own address, as JupyterHub's is measured; the proxy's is public.
    api = f"http://127.0.0.1:{hub_port}/hub/api"
    return common.spawn("chronohub", cmd, env, workdir, api), proxy_port


def start_jupyterhub(workdir: Path, token: str) -> common.Server:
    os.environ["BENCH_SPAWNER_CMD"] = json.dumps([sys.executable, str(TINY_SERVER)])
    try:
        return common.start_jupyterhub(workdir, token, trust_tokens=True)
    finally:
        del os.environ["BENCH_SPAWNER_CMD"]


# --- (b) proxy throughput ---------------------------------------------------------------------


class Load:
    """A lean keep-alive HTTP/1.1 client: each connection sends one GET, reads the answer by
    its Content-Length, and goes again, until the time is up."""

    def __init__(self, host: str, port: int, path: str, body_bytes: int = 1024) -> None:
        self.host, self.port = host, port
        self.body_bytes = body_bytes
        self.request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()

    async def run(self, connections: int, seconds: float, warmup: float) -> dict[str, Any]:
        latencies: list[float] = []
        errors = 0
        loop = asyncio.get_running_loop()
        start = loop.time()
        counting_from = start + warmup
        end = counting_from + seconds

        async def worker() -> None:
            nonlocal errors
            reader, writer = await asyncio.open_connection(self.host, self.port)
            clock = time.perf_counter  # uvloop's loop.time() counts whole milliseconds
            try:
                while (now := loop.time()) < end:
                    sent = clock()
                    writer.write(self.request)
                    head = await reader.readuntil(b"\r\n\r\n")
                    status = int(head[9:12])
                    length = 0
                    for line in head.split(b"\r\n"):
                        if line[:15].lower() == b"content-length:":
                            length = int(line[15:])
                    body = await reader.readexactly(length) if length else b""
                    if now >= counting_from:
                        if status == 200 and len(body) == self.body_bytes:
                            latencies.append(clock() - sent)
                        else:
                            errors += 1
            finally:
                writer.close()

        await asyncio.gather(*(worker() for _ in range(connections)))
        latencies.sort()
        if not latencies:
            raise common.StepError("no request succeeded")
        return {
            "rps": round(len(latencies) / seconds, 1),
            "p50_ms": round(common.quantile(latencies, 0.5) * 1000, 3),
            "p99_ms": round(common.quantile(latencies, 0.99) * 1000, 3),
            "requests": len(latencies),
            "errors": errors,
        }


def process_cpu(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def measure_proxy(
    label: str, port: int, pid: int | None, connections: int, args: argparse.Namespace
) -> dict[str, Any]:
    before = process_cpu(pid) if pid else 0.0
    figures = await Load("127.0.0.1", port, PROXY_PATH).run(connections, args.seconds, args.warmup)
    if pid is None:  # straight to the backend: no proxy
        log(f"  {label} c{connections}: {figures['rps']:.0f} req/s, p99 {figures['p99_ms']} ms")
        return figures
    used = process_cpu(pid) - before
    # CPU over the warm-up too: divide by every request, the warm-up's estimated from its rate.
    total_requests = figures["requests"] * (args.seconds + args.warmup) / args.seconds
    figures["cpu_us_per_req"] = round(used / total_requests * 1e6, 1)
    log(
        f"  {label} c{connections}: {figures['rps']:.0f} req/s, p50 {figures['p50_ms']} ms,"
        f" p99 {figures['p99_ms']} ms, {figures['cpu_us_per_req']} µs CPU/req"
    )
    return figures


def start_chp(workdir: Path, hub_target: str) -> tuple[subprocess.Popen[bytes], int, int, str]:
    port, api_port = common.free_port(), common.free_port()
    token = secrets.token_hex(16)
    log_file = (workdir / "chp.log").open("wb")
    proc = subprocess.Popen(
        [
            str(common.CHP_COMMAND), "--ip", "127.0.0.1", "--port", str(port),
            "--api-ip", "127.0.0.1", "--api-port", str(api_port),
            "--default-target", hub_target, "--log-level", "warn",
        ],
        env={**os.environ, "CONFIGPROXY_AUTH_TOKEN": token},
        stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    return proc, port, api_port, token


async def chp_route(api_port: int, token: str, target: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            try:
                async with session.post(
                    f"http://127.0.0.1:{api_port}/api/routes/user/bench",
                    json={"target": target, "user": "bench", "server_name": ""},
                    headers=common.auth(token),
                ) as response:
                    if response.status == 201:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise common.StepError("configurable-http-proxy did not take the route")


# --- the run ----------------------------------------------------------------------------------


@contextmanager
def step(errors: dict[str, str], name: str) -> Iterator[None]:
    try:
        yield
    except (common.StepError, OSError, aiohttp.ClientError, TimeoutError) as exc:
        log(f"{name} failed: {exc}")
        errors[name] = str(exc)


def median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 1)


def record(spawn: dict[str, Any], hub: str, timings: list[float], bare: list[float]) -> None:
    """A hub's figures: medians of POST to ready, of the bare starts beside them, and of the
    difference of each pair (the overhead)."""
    spawn[f"{hub}_post_to_ready_ms"] = median_ms(timings)
    spawn[f"{hub}_bare_start_ms"] = median_ms(bare)
    spawn[f"{hub}_overhead_ms"] = median_ms([t - b for t, b in zip(timings, bare, strict=True)])
    log(
        f"{hub}: POST to ready {spawn[f'{hub}_post_to_ready_ms']} ms, bare start"
        f" {spawn[f'{hub}_bare_start_ms']} ms, overhead {spawn[f'{hub}_overhead_ms']} ms (medians)"
    )


async def main(args: argparse.Namespace) -> dict[str, Any]:
    errors: dict[str, str] = {}
    result: dict[str, Any] = {
        "spawn_overhead_ms": None,
        "jupyterhub_spawn_overhead_ms": None,
        "spawn_overhead_vs_jupyterhub": None,
        "proxy_vs_chp_c1": None,
        "proxy_vs_chp_c32": None,
        "spawn": {"runs": args.spawns},
        "proxy": {"seconds": args.seconds, "rounds": 2, "body_bytes": 1024},
        "jupyterhub_version": common.jupyterhub_version(),
        "errors": errors,
        "note": "2 shared cores; other work on the machine makes the figures noisy",
    }
    token = secrets.token_hex(16)
    names = [f"s{i:02d}" for i in range(args.spawns)]
    with tempfile.TemporaryDirectory(prefix="chronohub-bench-spawn-") as tmp:
        root = Path(tmp)
        (root / "chronohub").mkdir()
        hub, proxy_port = start_chronohub(root / "chronohub", token)
        try:
            async with aiohttp.ClientSession() as session:
                with step(errors, "chronohub spawn"):
                    await common.wait_ready(session, hub)
                    await create_users(session, hub.api, token, [*names, "bench"])
                    timings, bare = await spawn_times(session, hub.api, token, names, root)
                    record(result["spawn"], "chronohub", timings, bare)
                with step(errors, "proxy"):
                    await proxy_bench(session, hub, proxy_port, token, root, args, result)
        finally:
            common.stop(hub)

        (root / "jupyterhub").mkdir()
        with step(errors, "jupyterhub spawn"):
            jupyterhub = start_jupyterhub(root / "jupyterhub", token)
            try:
                async with aiohttp.ClientSession() as session:
                    await common.wait_ready(session, jupyterhub)
                    await create_users(session, jupyterhub.api, token, names)
                    timings, bare = await spawn_times(
                        session, jupyterhub.api, token, names, root / "jupyterhub"
                    )
                    record(result["spawn"], "jupyterhub", timings, bare)
            finally:
                common.stop(jupyterhub)

    spawn = result["spawn"]
    for key, hub in (
        ("spawn_overhead_ms", "chronohub"),
        ("jupyterhub_spawn_overhead_ms", "jupyterhub"),
    ):
        if f"{hub}_overhead_ms" in spawn:
            result[key] = spawn[f"{hub}_overhead_ms"]
    if result["spawn_overhead_ms"] is not None and result["jupyterhub_spawn_overhead_ms"]:
        result["spawn_overhead_vs_jupyterhub"] = round(
            result["spawn_overhead_ms"] / result["jupyterhub_spawn_overhead_ms"], 3
        )
    return result


async def proxy_bench(
    session: aiohttp.ClientSession,
    hub: common.Server,
    proxy_port: int,
    token: str,
    root: Path,
    args: argparse.Namespace,
    result: dict[str, Any],
) -> None:
    async with session.post(f"{hub.api}/users/bench/server", headers=common.auth(token)) as r:
        if r.status != 201:
            raise common.StepError(f"POST /users/bench/server: {r.status}")
    service_url = (root / "chronohub" / "data" / "users" / "bench" / "service_url.txt").read_text()
    backend = service_url.removesuffix("/user/bench/")
    hub_target = hub.api.removesuffix("/hub/api")
    chp, chp_port, chp_api_port, chp_token = start_chp(root, hub_target)
    try:
        await chp_route(chp_api_port, chp_token, backend)
        sides = {"builtin": (proxy_port, hub.proc.pid), "chp": (chp_port, chp.pid)}
        for label, (port, _) in sides.items():  # both answer, from the same backend
            async with session.get(f"http://127.0.0.1:{port}{PROXY_PATH}") as response:
                body = await response.read()
                if response.status != 200 or len(body) != 1024:
                    raise common.StepError(f"{label} answered {response.status}, {len(body)} B")
        backend_port = int(backend.rsplit(":", 1)[1])
        direct = {
            f"c{c}": await measure_proxy("direct", backend_port, None, c, args) for c in (1, 32)
        }
        result["proxy"]["direct_to_backend"] = {
            level: {k: figures[k] for k in ("rps", "p50_ms", "p99_ms")}
            for level, figures in direct.items()
        }
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {
            label: {"c1": [], "c32": []} for label in sides
        }
        order = [(label, c) for c in (1, 32) for label in sides]
        for round_order in (order, order[::-1]):
            for label, connections in round_order:
                port, pid = sides[label]
                figures = await measure_proxy(label, port, pid, connections, args)
                runs[label][f"c{connections}"].append(figures)
        for label in sides:
            result["proxy"][label] = {
                level: {
                    key: round(statistics.mean(f[key] for f in figures), 3)
                    for key in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req")
                }
                for level, figures in runs[label].items()
            }
        for level in ("c1", "c32"):
            builtin_rps = result["proxy"]["builtin"][level]["rps"]
            chp_rps = result["proxy"]["chp"][level]["rps"]
            result[f"proxy_vs_chp_{level}"] = round(builtin_rps / chp_rps, 3)
    finally:
        chp.terminate()
        chp.wait()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spawns", type=int, default=10, help="spawns per hub")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per proxy load")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per load")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(main(args))
    else:
        result = uvloop.run(main(args))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    cli()
