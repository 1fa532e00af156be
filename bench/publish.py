"""Publishing benchmark: from a push to the HTML being served, beside nbconvert alone.

Run with ``make bench-publish``. One fresh embedded PostgreSQL, migrated; the real hub
(``hub.app.open_hub`` and ``make_app``) on a loopback port; the publishing service
(``chronohub_publish``) as a process with JupyterHub's service environment, as the hub starts
it. A warm-up push of a one-file project first: the service is long-running, so the measured
pushes find it warm (nbconvert's templates loaded), as they would in use.

Measured, on a public project of 20 notebooks (each distinct: 12 cells, markdown headings,
code with text outputs and a PNG, ~60 KB), median of ``--reps`` runs, each on a new project:

* ``push_to_served_s``: from the start of ``git push`` to ``@<commit>/index.html`` answering
  200 (a build is renamed into place whole, so that is every page served);
* ``nbconvert_s``: ``python -m nbconvert --to html`` on the same 20 files in one run (its
  interpreter's start included, as a user would wait for it);
* ``push_to_served_vs_nbconvert`` (target <= 1.2) and the render rates in notebooks/s;
* ``detail.exporter_alone_warm_s``: nbconvert's ``HTMLExporter`` on the 20 notebooks in
  this process, warm: the rendering alone, for scale (``nbconvert_s`` includes the start of
  its interpreter, about 1-2 s here);
* ``incremental_rerendered``: notebooks rendered again after a push that changes 1 of the 20
  (target <= 1), and that push's ``incremental_push_to_served_s``.

Prints progress on stderr and one JSON line on stdout. Not a test: nothing here asserts.
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
import zlib
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import nbformat
from aiohttp import web

import events.catalog  # noqa: F401 - registers the hub's events
from bench.event_store import log, start_server
from bench.git_http import Git
from hub import app, database
from hub import settings as hub_settings

NOTEBOOKS = 20
TARGETS = {"push_to_served_vs_nbconvert": ("<=", 1.2), "incremental_rerendered": ("<=", 1)}
SETUP = "publish-bench"


def config(dsn: str, setup: str, publish: str, data_dir: Path) -> hub_settings.Settings:
    return hub_settings.Settings(
        database_url=dsn,
        data_dir=data_dir,
        services=[{"name": SETUP, "api_token": setup}, {"name": "publish", "api_token": publish}],
        roles=[
            {"name": "setup", "scopes": ["admin:users", "tokens"], "services": [SETUP]},
            {
                "name": "publish-service",
                "scopes": ["read:projects", "read:events:projects", "read:users:groups"],
                "services": ["publish"],
            },
        ],
    )


def png(seed: int) -> str:
    """A small valid PNG (64x64 grey levels), different for each seed."""
    raw = b"".join(b"\0" + bytes((x * y + seed) % 256 for x in range(64)) for y in range(64))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = (64).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    image = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
    return base64.b64encode(image + chunk(b"IEND", b"")).decode()


def notebook(index: int, revision: int = 0) -> bytes:
    """Notebook ``index`` of the project (``revision`` changes its text)."""
    nb = nbformat.v4.new_notebook()
    for part in range(4):
        nb.cells.append(
            nbformat.v4.new_markdown_cell(
                f"## Part {part} of notebook {index} (revision {revision})\n\n"
                + "Some explanation with *emphasis* and `code`. " * 10
            )
        )
        cell = nbformat.v4.new_code_cell(f"values = [i ** {part} for i in range({index + 10})]")
        cell.outputs = [
            nbformat.v4.new_output("stream", name="stdout", text=f"{list(range(index * 50))}\n")
        ]
        nb.cells.append(cell)
        plot = nbformat.v4.new_code_cell("plot(values)")
        plot.outputs = [
            nbformat.v4.new_output(
                "display_data",
                data={"image/png": png(index * 7 + part + revision), "text/plain": "<Figure>"},
            )
        ]
        nb.cells.append(plot)
    return nbformat.writes(nb).encode()


def files(revision: int = 0) -> dict[str, bytes]:
    """The project: 20 notebooks and its ``publish.toml``."""
    made = {f"nb{i:02d}.ipynb": notebook(i, revision) for i in range(NOTEBOOKS)}
    made["publish.toml"] = b'paths = ["*.ipynb"]\n'
    return made


class Service:
    """The publishing service process."""

    def __init__(self, base: str, token: str, data_dir: Path) -> None:
        self.base = base
        self.token = token
        self.data_dir = data_dir
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""

    async def start(self) -> None:
        port = 0
        env = {
            **os.environ,
            "PUBLISH_DATA_DIR": str(self.data_dir),
            "JUPYTERHUB_API_TOKEN": self.token,
            "JUPYTERHUB_API_URL": self.base + "/hub/api",
            "JUPYTERHUB_BASE_URL": "/",
            "JUPYTERHUB_CLIENT_ID": "service-publish",
            "JUPYTERHUB_SERVICE_NAME": "publish",
            "JUPYTERHUB_SERVICE_PREFIX": "/services/publish/",
            "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}/services/publish/",
            "JUPYTERHUB_OAUTH_CALLBACK_URL": "/services/publish/oauth_callback",
            "JUPYTERHUB_OAUTH_ACCESS_SCOPES": '["access:services!service=publish"]',
        }
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "chronohub_publish", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = (await asyncio.wait_for(self.proc.stdout.readline(), 60)).decode()
        self.url = line.split(" at ", 1)[1].strip()

    async def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            await self.proc.wait()

    def published(self) -> list[dict[str, Any]]:
        path = self.data_dir / "log.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [e for e in map(json.loads, lines) if e["type"] == "published"]


async def push_and_wait(
    git: Git, session: aiohttp.ClientSession, service: Service, work: Path, url: str,
    full_name: str,
) -> tuple[float, str]:  # fmt: skip
    """Push ``work`` and wait until its commit is served: the seconds it took and the sha."""
    sha = (work / ".git" / "refs" / "heads" / "main").read_text().strip()
    started = time.perf_counter()
    await git.run("push", "-q", url, "main", cwd=work)
    page = f"{service.url}{full_name}/@{sha}/index.html"
    while True:
        async with session.get(page) as response:
            if response.status == 200:
                return time.perf_counter() - started, sha
        await asyncio.sleep(0.01)


async def nbconvert(root: Path) -> float:
    """``python -m nbconvert --to html`` on the 20 notebooks in one run: its seconds."""
    folder = root / "nbconvert"
    folder.mkdir()
    for name, content in files(revision=100).items():
        (folder / name).write_bytes(content)
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nbconvert", "--to", "html", "--log-level=ERROR",
        *sorted(str(p) for p in folder.glob("*.ipynb")), cwd=folder,
    )  # fmt: skip
    assert await proc.wait() == 0
    return time.perf_counter() - started


def exporter_alone() -> float:
    """nbconvert's ``HTMLExporter`` (lab template) on the 20 notebooks in this process, after
    a warm-up: the rendering itself, with no interpreter start and no service around it."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")
    notebooks = [nbformat.reads(notebook(i, 200).decode(), as_version=4) for i in range(NOTEBOOKS)]
    exporter.from_notebook_node(notebooks[0])
    started = time.perf_counter()
    for nb in notebooks:
        exporter.from_notebook_node(nb)
    return time.perf_counter() - started


def misses(figures: dict[str, Any]) -> list[str]:
    notes = []
    for key, (_, limit) in TARGETS.items():
        if figures.get(key) is not None and figures[key] > limit:
            notes.append(f"{key} = {figures[key]} misses its target <= {limit}")
    return notes


async def main(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="chronohub-bench-publish-"))
    root.chmod(0o711)
    server, admin_url = start_server(root / "pg")
    setup, publish = secrets.token_hex(24), secrets.token_hex(24)
    figures: dict[str, Any] = {}
    began = time.perf_counter()
    load_before = round(os.getloadavg()[0], 1)
    try:
        admin = await asyncpg.connect(admin_url)
        await admin.execute("CREATE DATABASE bench_publish")
        await admin.close()
        dsn = admin_url.replace("/postgres?", "/bench_publish?")
        await database.migrate(dsn)
        async with app.open_hub(config(dsn, setup, publish, root / "data")) as running:
            runner = web.AppRunner(app.make_app(running), access_log=None, shutdown_timeout=2.0)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            base = f"http://127.0.0.1:{runner.addresses[0][1]}"
            service = Service(base, publish, root / "publish")
            await service.start()
            try:
                figures = await measure(args, root, base, setup, service)
            finally:
                await service.stop()
                await runner.cleanup()
    finally:
        server.remove()
        shutil.rmtree(root, ignore_errors=True)
    return figures | {
        "detail": figures.pop("detail")
        | {
            "notebooks": NOTEBOOKS,
            "reps": args.reps,
            "runtime_s": round(time.perf_counter() - began),
            "load_average_before": load_before,
            "load_average_after": round(os.getloadavg()[0], 1),
            "cpus": os.cpu_count(),
        },
        "notes": misses(figures),
    }


async def measure(
    args: argparse.Namespace, root: Path, base: str, setup: str, service: Service
) -> dict[str, Any]:
    git = Git(root / "home")
    headers = {"Authorization": f"token {setup}"}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/hub/api/users/bench", headers=headers):
            pass
        async with session.post(
            f"{base}/hub/api/users/bench/tokens", json={}, headers=headers
        ) as response:
            token = (await response.json())["token"]

        async def project(name: str, content: dict[str, bytes]) -> tuple[Path, str]:
            async with session.post(
                f"{base}/hub/api/projects", json={"name": name, "visibility": "public"},
                headers={"Authorization": f"token {token}"},
            ) as response:  # fmt: skip
                assert response.status == 201, await response.text()
            work = root / name
            work.mkdir()
            await git.run("init", "-q", "-b", "main", cwd=work)
            for file_name, data in content.items():
                (work / file_name).write_bytes(data)
            await git.run("add", "-A", cwd=work)
            await git.run("commit", "-q", "-m", "start", cwd=work)
            return (
                work,
                f"http://bench:{token}@{base.removeprefix('http://')}/hub/git/bench/{name}.git",
            )

        work, url = await project("warm-up", {"publish.toml": b"", "a.ipynb": notebook(99)})
        await push_and_wait(git, session, service, work, url, "bench/warm-up")
        full: list[float] = []
        for rep in range(args.reps):
            name = f"twenty-{rep}"
            # each project's notebooks are new blobs: nothing comes from the cache
            work, url = await project(name, files(revision=100 + rep))
            seconds, _ = await push_and_wait(git, session, service, work, url, f"bench/{name}")
            full.append(seconds)
            log(f"push of {NOTEBOOKS} notebooks to served: {seconds:.2f} s")
        (work / "nb07.ipynb").write_bytes(notebook(7, revision=999))
        await git.run("commit", "-q", "-a", "-m", "one changed", cwd=work)
        incremental, sha = await push_and_wait(git, session, service, work, url, f"bench/{name}")
        [entry] = [e for e in service.published() if e["commit"] == sha]
        log(f"1 of {NOTEBOOKS} changed: {incremental:.2f} s, {entry['rerendered']} rendered")
    converts = []
    for _ in range(args.reps):
        shutil.rmtree(root / "nbconvert", ignore_errors=True)
        converts.append(await nbconvert(root))
        log(f"nbconvert --to html of {NOTEBOOKS}: {converts[-1]:.2f} s")
    in_process = await asyncio.to_thread(exporter_alone)
    log(f"nbconvert's HTMLExporter alone, warm, in this process: {in_process:.2f} s")
    served, converted = statistics.median(full), statistics.median(converts)
    return {
        "push_to_served_s": round(served, 3),
        "nbconvert_s": round(converted, 3),
        "push_to_served_vs_nbconvert": round(served / converted, 2),
        "render_rate_nb_per_s": round(NOTEBOOKS / served, 1),
        "nbconvert_rate_nb_per_s": round(NOTEBOOKS / converted, 1),
        "incremental_rerendered": entry["rerendered"],
        "incremental_push_to_served_s": round(incremental, 3),
        "detail": {"push_to_served_runs_s": [round(s, 3) for s in full],
                   "nbconvert_runs_s": [round(s, 3) for s in converts],
                   "exporter_alone_warm_s": round(in_process, 3)},
    }  # fmt: skip


def cli() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="runs of each measured push")
    result = asyncio.run(main(parser.parse_args()))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    cli()
