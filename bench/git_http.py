"""Git benchmark: push and clone through the hub's smart HTTP beside native git over file://.

Run with ``make bench-git``. One fresh embedded PostgreSQL, migrated; the real hub
(``hub.app.open_hub`` and ``make_app``) serving on a loopback port, its repositories in a
temporary data directory. A user and a token are made through the REST API; each measured
push goes to a new project (and, for native git, to a new bare repository), so every push
sends everything. Files are 5 KB of base64 random text (hard to compress), in one commit.
Wall-clock time of whole ``git`` commands, including git's 401 round trip for credentials
(the token is in the URL). Both clones check out the 1,000 files: the native bare repository's
HEAD names ``main`` as the hub's does (before, it named a missing ``master``, so the native
clone skipped its checkout and the ratio compared a clone with one without). Prints progress
on stderr and one JSON line on stdout. Not a test: nothing here asserts timing.

Measured:
* push and clone of 200 and of 1,000 files, median of ``--reps`` runs each, hub vs native:
  ``push200_vs_git``, ``clone200_vs_git``, ``push1000_vs_git``, ``clone1000_vs_git``;
* a fetch with nothing new, from a clone of the 1,000-file project: ``noop_fetch_ms``
  (median of 20; git's own start-up included, as a user would wait for it), and the same
  from a native clone over file:// for scale (``git_noop_fetch_ms`` in the detail);
* 16 clones of the 1,000-file project at once: ``clone16_wall_s`` and the median clone;
* the REST tree listing of the 1,000-file commit (``…/tree/main/?recursive=true``: 20
  directories, 1,000 files with their sizes): ``tree1000_p50_ms``, the median of 50
  requests after a first one, whose time is ``detail.tree1000_first_ms`` (listings are kept
  by tree sha, so the first request reads every blob's size and the next ones do not).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import asyncpg
from aiohttp import web

import events.catalog  # noqa: F401 - registers the hub's events
from bench.event_store import log, start_server
from hub import app, database
from hub import settings as hub_settings

SERVICE = "git-bench"
TARGETS = {
    "push1000_vs_git": ("<=", 1.5),
    "clone1000_vs_git": ("<=", 2.0),
    "noop_fetch_ms": ("<=", 30.0),
    "tree1000_p50_ms": ("<=", 20.0),
}


def config(dsn: str, token: str, data_dir: Path, *, native: bool = True) -> hub_settings.Settings:
    return hub_settings.Settings(
        database_url=dsn,
        data_dir=data_dir,
        project_git_native=native,
        services=[{"name": SERVICE, "api_token": token}],
        roles=[{"name": "git-bench", "scopes": ["admin:users", "tokens"], "services": [SERVICE]}],
    )


class Git:
    """git with a private HOME, prompts off."""

    def __init__(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": "bench",
            "GIT_AUTHOR_EMAIL": "bench@example.org",
            "GIT_COMMITTER_NAME": "bench",
            "GIT_COMMITTER_EMAIL": "bench@example.org",
        }

    async def run(self, *args: str, cwd: Path) -> float:
        """Run git (it must succeed); the seconds it took."""
        start = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            "git",
            *args,
            cwd=cwd,
            env=self.env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await process.communicate()
        elapsed = time.perf_counter() - start
        if process.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed: {err.decode()}")
        return elapsed


async def make_work_tree(git: Git, path: Path, files: int) -> None:
    path.mkdir(parents=True)
    for i in range(files):
        content = base64.b64encode(os.urandom(3750))  # 5,000 bytes of text
        (path / f"dir{i % 20:02d}").mkdir(exist_ok=True)
        (path / f"dir{i % 20:02d}" / f"file{i:05d}.txt").write_bytes(content)
    await git.run("init", "-q", "-b", "main", cwd=path)
    await git.run("add", "-A", cwd=path)
    await git.run("commit", "-q", "-m", f"{files} files", cwd=path)


class Hub:
    """The REST calls the benchmark makes."""

    def __init__(self, session: aiohttp.ClientSession, base: str, service_token: str) -> None:
        self.session = session
        self.base = base
        self.service = {"Authorization": f"token {service_token}"}

    async def user_token(self, name: str) -> str:
        await self.session.post(f"{self.base}/hub/api/users/{name}", headers=self.service)
        async with self.session.post(
            f"{self.base}/hub/api/users/{name}/tokens", headers=self.service, json={}
        ) as response:
            body = await response.json()
            if response.status != 201:
                raise RuntimeError(f"token: {response.status} {body}")
            token: str = body["token"]
            return token

    async def project(self, token: str, name: str) -> str:
        async with self.session.post(
            f"{self.base}/hub/api/projects",
            headers={"Authorization": f"token {token}"},
            json={"name": name},
        ) as response:
            body = await response.json()
            if response.status != 201:
                raise RuntimeError(f"project: {response.status} {body}")
            url: str = body["clone_url"]
            return url


async def tree_listing(
    session: aiohttp.ClientSession, base: str, token: str, clone_url: str, count: int
) -> tuple[float, float]:
    """The first and the median time (ms) of the recursive REST tree listing of the project
    cloned from ``clone_url``."""
    full_name = clone_url.split("/hub/git/", 1)[1].removesuffix(".git")
    url = f"{base}/hub/api/projects/{full_name}/tree/main/?recursive=true"
    headers = {"Authorization": f"token {token}"}
    times = []
    for _ in range(count + 1):
        began = time.perf_counter()
        async with session.get(url, headers=headers) as response:
            body = await response.json()
            if response.status != 200 or len(body["entries"]) < 1000:
                raise RuntimeError(f"tree: {response.status} {str(body)[:200]}")
        times.append((time.perf_counter() - began) * 1000)
    return round(times[0], 1), round(statistics.median(times[1:]), 2)


def with_token(url: str, token: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://bench:{quote(token)}@{rest}"


async def push_clone(
    git: Git, hub: Hub, token: str, root: Path, files: int, reps: int
) -> dict[str, Any]:
    """Median push and clone of ``files`` files, hub and native; the last hub URL."""
    work = root / f"work{files}"
    await make_work_tree(git, work, files)
    times: dict[str, list[float]] = {
        "hub_push": [],
        "hub_clone": [],
        "git_push": [],
        "git_clone": [],
    }
    url = ""
    native = root
    for rep in range(reps):
        url = with_token(await hub.project(token, f"p{files}-{rep}"), token)
        times["hub_push"].append(await git.run("push", "-q", url, "main", cwd=work))
        times["hub_clone"].append(
            await git.run("clone", "-q", url, str(root / f"hub-clone{files}-{rep}"), cwd=root)
        )
        native = root / f"native{files}-{rep}.git"
        await git.run("init", "-q", "--bare", "-b", "main", str(native), cwd=root)
        times["git_push"].append(await git.run("push", "-q", f"file://{native}", "main", cwd=work))
        times["git_clone"].append(
            await git.run(
                "clone", "-q", f"file://{native}", str(root / f"git-clone{files}-{rep}"), cwd=root
            )
        )
        log(
            f"{files} files, run {rep + 1}: push hub {times['hub_push'][-1]:.2f} s"
            f" / git {times['git_push'][-1]:.2f} s; clone hub {times['hub_clone'][-1]:.2f} s"
            f" / git {times['git_clone'][-1]:.2f} s"
        )
    medians = {key: statistics.median(values) for key, values in times.items()}
    return {
        f"push{files}_vs_git": round(medians["hub_push"] / medians["git_push"], 2),
        f"clone{files}_vs_git": round(medians["hub_clone"] / medians["git_clone"], 2),
        "detail": {f"{key}{files}_s": round(value, 3) for key, value in medians.items()},
        "url": url,
        "native": f"file://{native}",
    }


async def noop_fetch(git: Git, clone: Path, count: int) -> float:
    times = [await git.run("fetch", "-q", cwd=clone) for _ in range(count)]
    return round(statistics.median(times) * 1000, 1)


async def concurrent_clones(git: Git, url: str, root: Path, count: int) -> dict[str, float]:
    start = time.perf_counter()
    times = await asyncio.gather(
        *(git.run("clone", "-q", url, str(root / f"many{i}"), cwd=root) for i in range(count))
    )
    return {
        f"clone{count}_wall_s": round(time.perf_counter() - start, 2),
        f"clone{count}_median_s": round(statistics.median(times), 2),
    }


def misses(figures: dict[str, Any]) -> list[str]:
    notes = []
    for key, (_, target) in TARGETS.items():
        value = figures.get(key)
        if value is None:
            notes.append(f"{key}: not measured")
        elif value > target:
            notes.append(f"{key} = {value} misses its target <= {target:g} ({value / target:.1f}x)")
    return notes


async def main(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="chronohub-bench-git-"))
    root.chmod(0o711)  # a root run's PostgreSQL account passes through to its cluster
    server, admin_url = start_server(root / "pg")
    token = secrets.token_hex(24)
    figures: dict[str, Any] = {}
    detail: dict[str, Any] = {}
    began = time.perf_counter()
    load_before = round(os.getloadavg()[0], 1)
    try:
        admin = await asyncpg.connect(admin_url)
        await admin.execute("CREATE DATABASE bench_git")
        await admin.close()
        dsn = admin_url.replace("/postgres?", "/bench_git?")
        await database.migrate(dsn)
        settings = config(dsn, token, root / "data", native=not args.dulwich)
        async with app.open_hub(settings) as running:
            runner = web.AppRunner(app.make_app(running), access_log=None, shutdown_timeout=2.0)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            try:
                base = f"http://127.0.0.1:{runner.addresses[0][1]}"
                git = Git(root / "home")
                async with aiohttp.ClientSession() as session:
                    hub = Hub(session, base, token)
                    user_token = await hub.user_token("bench")
                    url = native = ""
                    for files in (200, 1000):
                        result = await push_clone(git, hub, user_token, root, files, args.reps)
                        url, native = result.pop("url"), result.pop("native")
                        detail |= result.pop("detail")
                        figures |= result
                    clone = root / "fetcher"
                    await git.run("clone", "-q", url, str(clone), cwd=root)
                    figures["noop_fetch_ms"] = await noop_fetch(git, clone, 20)
                    native_clone = root / "native-fetcher"
                    await git.run("clone", "-q", native, str(native_clone), cwd=root)
                    detail["git_noop_fetch_ms"] = await noop_fetch(git, native_clone, 20)
                    log(
                        f"no-op fetch: {figures['noop_fetch_ms']} ms"
                        f" (git over file://: {detail['git_noop_fetch_ms']} ms)"
                    )
                    figures |= await concurrent_clones(git, url, root, 16)
                    log(f"16 concurrent clones: {figures['clone16_wall_s']} s")
                    first, p50 = await tree_listing(session, base, user_token, url, 50)
                    figures["tree1000_p50_ms"] = p50
                    detail["tree1000_first_ms"] = first
                    log(f"REST tree of 1,000 files: first {first} ms, then p50 {p50} ms")
            finally:
                await runner.cleanup()
    finally:
        server.remove()
        shutil.rmtree(root, ignore_errors=True)
    return figures | {
        "detail": detail
        | {
            "reps": args.reps,
            "upload_pack": "dulwich" if args.dulwich else "git",
            "runtime_s": round(time.perf_counter() - began),
            "load_average_before": load_before,
            "load_average_after": round(os.getloadavg()[0], 1),
            "cpus": os.cpu_count(),
        },
        "notes": misses(figures),
    }


def cli() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="runs of each push and clone")
    parser.add_argument(
        "--dulwich",
        action="store_true",
        help="serve clones and fetches with dulwich, not the installed git (for comparison)",
    )
    args = parser.parse_args()
    result = asyncio.run(main(args))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    cli()
