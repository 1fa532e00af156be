"""Audit benchmark: history, export, state --at and the live stream over a 1,000,000-event log.

Run with ``make bench-audit``. One fresh embedded PostgreSQL (default, durable configuration),
migrated, with 1,000,000 user events (10,000 users, 100 each, interleaved so that one user's
events are spread over the whole log) written by ``bench/event_store.py``'s SQL loader, and
the users read model rebuilt over them. Then the real hub (``hub.app.open_hub`` and
``make_app``, default pool) serves on a loopback port, with one service whose role holds
``read:events``. Prints progress on stderr and one JSON line on stdout. Not a test: nothing
here asserts timing. Everything stops by time and count.

At ~650 lines it stays one script: each measurement is a short function over one shared set-up
(the loaded log and the serving hub), and a reader follows a benchmark top to bottom.

Measured:
* (a) ``GET /hub/api/events?user=<name>&limit=100`` for random users, one request at a time:
  p50/p99 ms; the same query sent alone (``history_about_ascending``, its subjects looked up
  first and not timed) on one connection, as the app sends it (a prepared statement, so
  PostgreSQL's plan cache may switch to a generic plan); its ``EXPLAIN ANALYZE`` (the custom
  plan and the generic one) is printed on stderr. The log has the GIN index on ``data`` of
  migration 0004;
* (b) ``hub.cli.events.export`` of the whole log to a file, events/s (PostgreSQL builds the
  lines, several pages side by side);
* (c) ``hub.cli.events.state`` at the position in the middle of the log (its table is
  swallowed), seconds;
* (d) fan-out: 50 followers on ``GET /hub/api/events/stream?after=<head>`` (aiohttp, in a
  child process so that their parsing does not share the hub's event loop) while appends of
  single ``user.admin_changed`` events run through ``EventStore.append`` in the hub's process
  at 1,000/s for 10 s (paced, open loop, at most 64 in flight: when the hub cannot keep up,
  the run takes longer and ``fanout_appends_per_s`` says what was reached). Each event's lag
  is the time a follower received it minus the time its append returned (wall clock, both
  processes on this machine). Then a shorter run at 200 appends/s, for comparison
  (``--low-rate``; its figures end in ``_at_200``). CPU seconds of the hub process, of
  PostgreSQL and of the followers are reported beside (the machine has 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import random
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp
import asyncpg
from aiohttp import web

import events.catalog  # noqa: F401 - registers the hub's events
from bench.event_store import load_user_log, log, start_server
from events import models, store
from events.catalog import users as user_events
from hub import app, database
from hub import settings as hub_settings
from hub.audit import export_format
from hub.audit import history as audit
from hub.cli import events as events_cli
from projections import rebuild, users

ROOT = Path(__file__).resolve().parent.parent
SERVICE = "audit-bench"
TOKEN_ENV = "AUDIT_BENCH_TOKEN"
HISTORY_LIMIT = 100
HISTORY = audit.queries["history_about_ascending"]
# An SSE event's id line: "id: <tx>:<position>" (the data line starts with "data: ").
SSE_ID = re.compile(rb"^id: [0-9]+:([0-9]+)$", re.MULTILINE)

TARGETS = {
    "history_p50_ms": ("<", 20.0),
    "export_events_per_s": (">=", 100_000.0),
    "state_at_s": ("<", 30.0),
    "follower_lag_p99_ms": ("<", 100.0),
}


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def config(dsn: str, token: str) -> hub_settings.Settings:
    return hub_settings.Settings(
        database_url=dsn,
        services=[{"name": SERVICE, "api_token": token}],
        roles=[{"name": "audit-reader", "scopes": ["read:events"], "services": [SERVICE]}],
    )


# --- (a) history ----------------------------------------------------------------------------


async def check_history(session: aiohttp.ClientSession, url: str, name: str, uid: UUID) -> None:
    """One request checked: the user's first 100 events, all about that user."""
    async with session.get(url, params={"user": name, "limit": str(HISTORY_LIMIT)}) as response:
        body = await response.json()
        if response.status != 200:
            raise RuntimeError(f"history for {name}: {response.status} {body}")
    if len(body) != HISTORY_LIMIT or any(e["data"]["user_id"] != str(uid) for e in body):
        raise RuntimeError(f"history for {name}: {len(body)} events, not all about {uid}")


async def time_http(
    session: aiohttp.ClientSession, url: str, names: list[str], budget_s: float
) -> list[float]:
    """Sequential requests for ``names`` (at most ``budget_s`` seconds); their latencies."""
    latencies: list[float] = []
    deadline = time.perf_counter() + budget_s
    for name in names:
        start = time.perf_counter()
        async with session.get(url, params={"user": name, "limit": str(HISTORY_LIMIT)}) as r:
            await r.read()
            if r.status != 200:
                raise RuntimeError(f"history for {name}: {r.status}")
        latencies.append(time.perf_counter() - start)
        if time.perf_counter() > deadline:
            break
    return latencies


def history_args(allowed: list[dict[str, Any]]) -> tuple[Any, ...]:
    """The arguments the app sends with ``history_about_ascending`` for ``?user=NAME``."""
    return audit.history_args(audit.Query(limit=HISTORY_LIMIT), allowed)


async def time_sql(
    conn: asyncpg.Connection[Any], names: list[str], budget_s: float, query: str
) -> tuple[list[float], dict[str, int]]:
    """``query`` (the history query) alone, on one connection, as a prepared statement (as
    the app sends it); latencies, and how often PostgreSQL's plan cache used a custom or a
    generic plan (after five executions it may switch to a generic one)."""
    latencies: list[float] = []
    deadline = time.perf_counter() + budget_s
    for name in names:
        args = history_args(await audit.subjects(conn, [name], []))
        start = time.perf_counter()
        await conn.fetchval(query, *args)
        latencies.append(time.perf_counter() - start)
        if time.perf_counter() > deadline:
            break
    row = await conn.fetchrow(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1",
        query,
    )
    plans = {"generic": row["generic_plans"], "custom": row["custom_plans"]} if row else {}
    return latencies, plans


async def literal(conn: asyncpg.Connection[Any], value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    quoted: str = await conn.fetchval("SELECT quote_literal($1::text[]::text)", list(value))
    return quoted


async def explain(
    conn: asyncpg.Connection[Any], name: str, generic: bool, query: str = HISTORY
) -> list[str]:
    """``EXPLAIN (ANALYZE, BUFFERS)`` of the history query for one user with a custom or a
    generic plan, as lines (a SQL-level PREPARE: EXPLAIN of a parameterised statement sent by
    the client would always plan with the values known)."""
    args = history_args(await audit.subjects(conn, [name], []))
    values = ", ".join([await literal(conn, value) for value in args])
    mode = "force_generic_plan" if generic else "force_custom_plan"
    await conn.execute(f"PREPARE bench_history AS {query}")
    try:
        await conn.execute(f"SET plan_cache_mode = {mode}")
        rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_history({values})")
    finally:
        await conn.execute("RESET plan_cache_mode")
        await conn.execute("DEALLOCATE bench_history")
    return [row[0] for row in rows]


def key_lines(plan: list[str]) -> str:
    """The plan's scan nodes, rows filtered out, and execution time, on one line."""
    keep = [
        line.strip().removeprefix("->  ")
        for line in plan
        if "Scan" in line or "Rows Removed" in line or "Execution Time" in line
    ]
    return " | ".join(re.sub(r"\s+", " ", line) for line in keep)


async def plans(
    conn: asyncpg.Connection[Any], name: str, suffix: str, query: str = HISTORY
) -> dict[str, str]:
    """Both plans of the history query, printed on stderr; their key lines."""
    figures = {}
    for generic in (False, True):
        plan = await explain(conn, name, generic, query)
        label = "generic" if generic else "custom"
        log(f"EXPLAIN ANALYZE of the history query for one user, {label} plan{suffix}:")
        log("\n".join("    " + line for line in plan))
        figures[f"history_plan_{label}{suffix}"] = key_lines(plan)
    return figures


async def bench_history(
    hub_store: store.EventStore,
    session: aiohttp.ClientSession,
    base: str,
    names: list[str],
    args: argparse.Namespace,
    suffix: str,
    *,
    show_plans: bool = True,
) -> dict[str, Any]:
    url = f"{base}/hub/api/events"
    pool = hub_store.pool
    uid = await pool.fetchval("SELECT user_id FROM users WHERE name = $1", names[0])
    await check_history(session, url, names[0], uid)
    figures: dict[str, Any] = {}
    if show_plans:
        async with pool.acquire() as conn:
            figures |= await plans(conn, names[0], suffix)
    await time_http(session, url, names[-5:], args.history_seconds)  # warm-up, discarded
    http = await time_http(session, url, names[: args.requests], args.history_seconds)
    figures[f"history_p50_ms{suffix}"] = ms(statistics.median(http))
    figures[f"history_p99_ms{suffix}"] = ms(quantile(http, 0.99))
    figures[f"history_requests{suffix}"] = len(http)
    async with pool.acquire() as conn:
        sql, used = await time_sql(conn, names[: args.requests], args.history_seconds, HISTORY)
    figures[f"history_sql_p50_ms{suffix}"] = ms(statistics.median(sql))
    figures[f"history_sql_p99_ms{suffix}"] = ms(quantile(sql, 0.99))
    figures[f"history_sql_plans{suffix}"] = used
    log(
        f"history{suffix}: HTTP p50 {figures[f'history_p50_ms{suffix}']} ms"
        f" p99 {figures[f'history_p99_ms{suffix}']} ms ({len(http)} requests);"
        f" SQL p50 {figures[f'history_sql_p50_ms{suffix}']} ms ({len(sql)} queries;"
        f" plans used {used})"
    )
    return figures


# --- (b) export and (c) state --at -----------------------------------------------------------


async def bench_export(hub_store: store.EventStore, root: Path) -> dict[str, Any]:
    target = root / "export.jsonl"
    total = await hub_store.pool.fetchval("SELECT count(*) FROM events")
    start = time.perf_counter()
    status = await events_cli.export(hub_store, target)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"export returned {status}")
    lines = await asyncio.to_thread(export_format.count_lines, target)
    if lines != total:
        raise RuntimeError(f"export wrote {lines} lines, expected {total}")
    size = target.stat().st_size
    target.unlink()
    log(f"export: {lines:,} events in {elapsed:.1f} s, {size / 2**20:.0f} MB")
    return {
        "export_events_per_s": round(lines / elapsed),
        "export_s": round(elapsed, 2),
        "export_mb": round(size / 2**20),
    }


async def bench_state(hub_store: store.EventStore) -> dict[str, Any]:
    pool = hub_store.pool
    total = await pool.fetchval("SELECT count(*) FROM events")
    middle = await pool.fetchval(
        "SELECT global_position FROM events ORDER BY global_position OFFSET $1 LIMIT 1",
        total // 2,
    )
    shown = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(shown):
        status = await events_cli.state(hub_store, middle, "users", limit=100)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"state --at {middle} returned {status}")
    log(f"state --at {middle}: {elapsed:.1f} s ({shown.getvalue().splitlines()[0]})")
    return {"state_at_s": round(elapsed, 2), "state_at_position": middle}


# --- (d) SSE fan-out --------------------------------------------------------------------------


async def paced_appends(
    hub_store: store.EventStore, user_ids: list[UUID], rate: float, seconds: float
) -> tuple[dict[int, float], list[float], float]:
    """Append ``rate`` single events a second for ``seconds`` (open loop, at most 64 in
    flight, each on its own user's stream); the wall-clock time each position's append
    returned, the append latencies, and the time the appends took."""
    appended: dict[int, float] = {}
    latencies: list[float] = []
    in_flight = asyncio.Semaphore(64)
    metadata = models.Metadata(
        actor=models.Actor(kind="service", name=SERVICE), request_id="bench-audit"
    )
    total = int(rate * seconds)

    async def one(i: int) -> None:
        uid = user_ids[i % len(user_ids)]
        try:
            begun = time.perf_counter()
            result = await hub_store.append(
                f"user-{uid}",
                [user_events.UserAdminChanged(user_id=uid, admin=i % 2 == 0)],
                metadata=metadata,
            )
            appended[result.positions[0]] = time.time()
            latencies.append(time.perf_counter() - begun)
        finally:
            in_flight.release()

    tasks: set[asyncio.Task[None]] = set()
    start = time.perf_counter()
    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await in_flight.acquire()
        task = asyncio.create_task(one(i))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    return appended, latencies, time.perf_counter() - start


def postgres_cpu_s(backend_pid: int) -> float | None:
    """CPU seconds of the PostgreSQL server (postmaster and every process under it)."""
    try:
        import psutil

        postmaster = psutil.Process(backend_pid).parent()
        total = 0.0
        for proc in [postmaster, *postmaster.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
        return total
    except Exception:
        return None


async def bench_fanout(
    hub_store: store.EventStore,
    base: str,
    token: str,
    root: Path,
    followers: int,
    rate: float,
    seconds: float,
    suffix: str = "",
) -> dict[str, Any]:
    """``followers`` SSE followers while ``rate`` appends/s run for ``seconds``."""
    pool = hub_store.pool
    user_ids = [r["user_id"] for r in await pool.fetch("SELECT user_id FROM users ORDER BY name")]
    head = await hub_store.head()
    out = root / "followers.json"
    url = f"{base}/hub/api/events/stream?after={head}"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.audit",
        "--follow",
        url,
        "--followers",
        str(followers),
        "--out",
        str(out),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, TOKEN_ENV: token},
        cwd=ROOT,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        ready = await asyncio.wait_for(child.stdout.readline(), 60)
        if ready.strip() != b"ready":
            raise RuntimeError(f"followers did not connect: {ready!r}")
        log(f"{followers} followers connected after {head}; appending {rate:g}/s")
        await asyncio.sleep(1.0)
        backend = await pool.fetchval("SELECT pg_backend_pid()")
        pg_before = postgres_cpu_s(backend)
        cpu_before = time.process_time()
        appended, append_latencies, took = await paced_appends(hub_store, user_ids, rate, seconds)
        log(f"appended {len(appended):,} events in {took:.1f} s; waiting for the followers")
        child.stdin.write(f"{len(appended)}\n".encode())
        await child.stdin.drain()
        await asyncio.wait_for(child.wait(), seconds + 60)
        hub_cpu = time.process_time() - cpu_before
        pg_after = postgres_cpu_s(backend)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    result = json.loads(out.read_text())
    out.unlink()

    first_append = min(appended.values())
    lags: list[float] = []
    per_follower_p99: list[float] = []
    missing = 0
    last_receipt = first_append
    for positions, times in result["followers"]:
        mine = [t - appended[p] for p, t in zip(positions, times, strict=True) if p in appended]
        missing += len(appended) - len(set(positions) & appended.keys())
        lags += mine
        if mine:
            per_follower_p99.append(quantile(mine, 0.99))
        if times:
            last_receipt = max(last_receipt, max(times))
    if not lags:
        raise RuntimeError("the followers received none of the appended events")
    figures = {
        "follower_lag_p99_ms": ms(quantile(lags, 0.99)),
        "follower_lag_p50_ms": ms(statistics.median(lags)),
        "follower_lag_max_ms": ms(max(lags)),
        "follower_lag_worst_follower_p99_ms": ms(max(per_follower_p99)),
        "fanout_followers": followers,
        "fanout_rate_asked": rate,
        "fanout_appends": len(appended),
        "fanout_appends_per_s": round(len(appended) / took),
        "fanout_append_p50_ms": ms(statistics.median(append_latencies)),
        "fanout_append_p99_ms": ms(quantile(append_latencies, 0.99)),
        "fanout_deliveries": len(lags),
        "fanout_deliveries_per_s": round(len(lags) / (last_receipt - first_append)),
        "fanout_missing_deliveries": missing,
        "fanout_hub_cpu_s": round(hub_cpu, 1),
        "fanout_hub_cpu_us_per_delivery": round(hub_cpu * 1e6 / len(lags), 1),
        "fanout_followers_cpu_s": round(result["cpu_s"], 1),
        "fanout_postgres_cpu_s": (
            round(pg_after - pg_before, 1)
            if pg_before is not None and pg_after is not None
            else None
        ),
        "fanout_pool_max": hub_store.pool.get_max_size(),
    }
    log(
        f"fan-out at {rate:g}/s: lag p50 {figures['follower_lag_p50_ms']} ms,"
        f" p99 {figures['follower_lag_p99_ms']} ms, max {figures['follower_lag_max_ms']} ms;"
        f" {figures['fanout_deliveries_per_s']:,} deliveries/s, {missing} missing;"
        f" {figures['fanout_appends_per_s']} appends/s"
    )
    return {f"{key}{suffix}": value for key, value in figures.items()}


async def follow(url: str, followers: int, out: Path) -> None:
    """The child process: ``followers`` SSE clients; each (position, receive time) to ``out``.

    Prints ``ready`` when every stream is open, then reads the number of appended events on
    stdin and stops when every follower has that many, or 30 s later.
    """
    headers = {"Authorization": f"token {os.environ[TOKEN_ENV]}"}
    received: list[tuple[list[int], list[float]]] = [([], []) for _ in range(followers)]
    opened = 0
    all_open = asyncio.Event()
    cpu_start = time.process_time()

    async def follower(i: int, session: aiohttp.ClientSession) -> None:
        nonlocal opened
        positions, times = received[i]
        async with session.get(url, headers=headers) as response:
            if response.status != 200:
                raise RuntimeError(f"stream: {response.status} {await response.text()}")
            opened += 1
            if opened == followers:
                all_open.set()
            pending = b""
            async for chunk in response.content.iter_any():
                now = time.time()
                pending += chunk
                end = pending.rfind(b"\n\n")
                if end < 0:
                    continue
                for match in SSE_ID.finditer(pending, 0, end):
                    positions.append(int(match[1]))
                    times.append(now)
                pending = pending[end + 2 :]

    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    connector = aiohttp.TCPConnector(limit=followers)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        tasks = [asyncio.create_task(follower(i, session)) for i in range(followers)]
        try:
            opening = asyncio.create_task(all_open.wait())
            await asyncio.wait([opening, *tasks], timeout=30, return_when=asyncio.FIRST_COMPLETED)
            opening.cancel()
            if not all_open.is_set():
                failed = [t for t in tasks if t.done()]
                raise RuntimeError(
                    f"{opened} of {followers} streams open"
                    + (f": {failed[0].exception()}" if failed else "")
                )
            print("ready", flush=True)
            expected = int(await asyncio.to_thread(sys.stdin.readline))
            deadline = time.perf_counter() + 30
            while time.perf_counter() < deadline and any(len(p) < expected for p, _ in received):
                await asyncio.sleep(0.05)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    out.write_text(json.dumps({"followers": received, "cpu_s": time.process_time() - cpu_start}))


# --- main -------------------------------------------------------------------------------------


def verdicts(figures: dict[str, Any]) -> list[str]:
    notes = []
    for key, (op, target) in TARGETS.items():
        value = figures.get(key)
        if value is None:
            notes.append(f"{key}: not measured")
            continue
        met = value < target if op == "<" else value >= target
        if not met:
            factor = value / target if op == "<" else target / value
            notes.append(f"{key} = {value:,} misses its target {op} {target:,g} ({factor:.1f}x)")
    return notes


async def main(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="chronohub-bench-audit-"))
    server, admin_url = start_server(root)
    token = secrets.token_hex(24)
    figures: dict[str, Any] = {}
    began = time.perf_counter()
    # The machine may be shared: its load average, beside the figures, says how noisy they are.
    load_before = round(os.getloadavg()[0], 1)
    try:
        admin = await asyncpg.connect(admin_url)
        await admin.execute("CREATE DATABASE bench_audit")
        await admin.close()
        dsn = admin_url.replace("/postgres?", "/bench_audit?")
        await database.migrate(dsn)
        log(f"loading {args.events:,} user events ({args.users:,} users)")
        start = time.perf_counter()
        await load_user_log(dsn, args.events, args.users)
        log(f"loaded in {time.perf_counter() - start:.0f} s; rebuilding the users read model")
        pool = await database.create_pool(dsn, min_size=1, max_size=2)
        try:
            await rebuild.rebuild(store.EventStore(pool), users.UsersProjection())
        finally:
            await pool.close()

        async with app.open_hub(config(dsn, token)) as hub:
            runner = web.AppRunner(app.make_app(hub), access_log=None, shutdown_timeout=2.0)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            try:
                port = runner.addresses[0][1]
                base = f"http://127.0.0.1:{port}"
                names = [r["name"] for r in await hub.store.pool.fetch("SELECT name FROM users")]
                random.Random(0).shuffle(names)
                auth = {"Authorization": f"token {token}"}
                async with aiohttp.ClientSession(headers=auth) as session:
                    log("(a) history for one user")
                    figures |= await bench_history(hub.store, session, base, names, args, "")
                    log("(b) export")
                    figures |= await bench_export(hub.store, root)
                    log("(c) state --at the middle")
                    figures |= await bench_state(hub.store)
                log("(d) SSE fan-out")
                figures |= await bench_fanout(
                    hub.store, base, token, root, args.followers, args.rate, args.seconds
                )
                if args.low_rate:
                    log(f"(d) again at {args.low_rate:g} appends/s, for comparison")
                    figures |= await bench_fanout(
                        hub.store,
                        base,
                        token,
                        root,
                        args.followers,
                        args.low_rate,
                        args.seconds / 2,
                        f"_at_{args.low_rate:g}",
                    )
            finally:
                await runner.cleanup()
    finally:
        server.remove()
        shutil.rmtree(root, ignore_errors=True)

    result = {key: figures.pop(key) for key in TARGETS}
    plan = {k: figures.pop(k) for k in list(figures) if k.startswith("history_plan_")}
    result["detail"] = figures | {
        "events_loaded": args.events,
        "users": args.users,
        "runtime_s": round(time.perf_counter() - began),
        "load_average_1min_before_after": [load_before, round(os.getloadavg()[0], 1)],
    }
    result["notes"] = [*verdicts(result), *explanations(result, figures, plan)]
    return result


def explanations(result: dict[str, Any], f: dict[str, Any], plan: dict[str, str]) -> list[str]:
    """What the plans and the fan-out figures say, for the notes."""
    notes = [
        f"history (GIN index on data): HTTP p50 {result['history_p50_ms']} ms, query alone p50"
        f" {f['history_sql_p50_ms']} ms (plans used {f['history_sql_plans']});"
        f" generic plan: {plan['history_plan_generic']}; custom plan:"
        f" {plan['history_plan_custom']}",
    ]
    notes.append(
        f"fan-out: {f['fanout_appends_per_s']} appends/s reached of {f['fanout_rate_asked']:g}"
        f" asked (append p50 {f['fanout_append_p50_ms']} ms), {f['fanout_deliveries_per_s']:,}"
        f" deliveries/s; CPU s: hub {f['fanout_hub_cpu_s']}"
        f" ({f['fanout_hub_cpu_us_per_delivery']} us per delivery), PostgreSQL"
        f" {f['fanout_postgres_cpu_s']}, followers {f['fanout_followers_cpu_s']}"
    )
    return notes


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the log")
    parser.add_argument("--users", type=int, default=10_000, help="users in the log")
    parser.add_argument("--requests", type=int, default=200, help="history requests at most")
    parser.add_argument(
        "--history-seconds", type=float, default=20.0, help="time budget of each history run"
    )
    parser.add_argument("--followers", type=int, default=50, help="SSE followers")
    parser.add_argument("--rate", type=float, default=1000.0, help="appends/s during fan-out")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the fan-out")
    parser.add_argument(
        "--low-rate", type=float, default=200.0, help="a second, shorter fan-out (0: none)"
    )
    parser.add_argument("--follow", help=argparse.SUPPRESS)  # the followers' child process
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        import uvloop

        run: Any = uvloop.run
    except ImportError:
        run = asyncio.run
    if args.follow:
        run(follow(args.follow, args.followers, args.out))
        return
    os.environ.setdefault("PYTHONHASHSEED", "0")
    print(json.dumps(run(main(args))), flush=True)


if __name__ == "__main__":
    cli()
