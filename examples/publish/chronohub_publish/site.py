"""Builds: one commit of a project rendered into a directory, renamed into place when whole.

``sites/<project id>/<commit>/`` holds what ``/@<commit>/`` serves, and never changes once
there. Renderings are cached by blob id (``cache/``), so a push that changes one notebook of
twenty renders one. A build that fails (bad ``publish.toml``, a notebook nbconvert cannot
read, a dashboard that raises) leaves the last good commit as the latest and records its
error, which the project's members see on its pages.
"""

from __future__ import annotations

import asyncio
import html
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from chronohub_publish import dashboards, gitmirror, manifest, render, sandbox

ZERO = "0" * 40


class BuildError(RuntimeError):
    """A build that cannot be published; ``detail`` is what members are shown."""

    def __init__(
        self, message: str, detail: str = "", runs: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.detail = detail or message
        self.runs = runs or []
        """The dashboards the build ran before it failed (the last one failed)."""


@dataclass
class Built:
    """What a build did."""

    commit: str
    files: int = 0
    rerendered: int = 0
    dashboards: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def error_of(run: dashboards.Run) -> tuple[str, str]:
    """A failed run's one-line message (no file contents) and its detail for members."""
    if run.notebook is None or run.failing_cell is None:
        return (run.error or "failed").splitlines()[0][:300], run.error or ""
    cell = run.notebook.cells[run.failing_cell]
    error = next(o for o in cell.outputs if o.get("output_type") == "error")
    # numbered as in the notebook pushed: the injected parameters cell is not counted
    injected = sum(
        "injected-parameters" in c.metadata.get("tags", [])
        for c in run.notebook.cells[: run.failing_cell]
    )
    number = run.failing_cell + 1 - injected
    if run.timed_out:
        line = f"cell {number}: {run.error}"
    else:
        line = f"cell {number}: {error.get('ename')}: {error.get('evalue')}"
    return line[:300], f"{line}\n\n{cell.source}"


def failure_page(title: str, run: dashboards.Run) -> str:
    """A failed run as a page: a banner naming the failing cell, then the notebook as it ran
    (code shown, so the failing cell can be read), or the error alone."""
    message, _ = error_of(run)
    banner = (
        f'<div class="publish-banner" role="alert"><strong>This dashboard failed'
        f"</strong>: {html.escape(message)}</div>"
    )
    if run.notebook is None:
        return render.page(title, render.TOC_STYLE + banner)
    return render.with_toc(render.notebook(run.notebook, None), banner)


class Builder:
    """Renders commits of projects into ``data_dir``."""

    def __init__(self, data_dir: Path, mirror: gitmirror.Mirror, guard: sandbox.Guard) -> None:
        self.data_dir = data_dir
        self.mirror = mirror
        self.guard = guard
        self.cache = data_dir / "cache"
        self.cache.mkdir(parents=True, exist_ok=True)

    def site_dir(self, project_id: str, commit: str) -> Path:
        return self.data_dir / "sites" / project_id / commit

    def checkout_dir(self, project_id: str, commit: str) -> Path:
        return self.data_dir / "checkouts" / project_id / commit

    def runs_dir(self, project_id: str, commit: str, path: str) -> Path:
        return self.data_dir / "runs" / project_id / commit / path

    async def manifest_at(
        self, repo: Path, entries: list[gitmirror.Entry], default_branch: str
    ) -> manifest.Manifest | None:
        """The commit's ``publish.toml`` (None: the project does not publish)."""
        found = next((e for e in entries if e.path == manifest.FILE_NAME), None)
        if found is None:
            return None
        text = (await self.mirror.read(repo, found.blob)).decode(errors="replace")
        try:
            return manifest.parse(text, default_branch)
        except manifest.ManifestError as exc:
            raise BuildError(str(exc)) from exc

    async def _rendered(self, repo: Path, entry: gitmirror.Entry, base: Path) -> tuple[str, bool]:
        """The page of ``entry`` and whether it had to be rendered (False: from the cache)."""
        cached = self.cache / f"{entry.blob}-{render.RENDERER}.html"
        if cached.exists():
            return cached.read_text(), False
        source = await self.mirror.read(repo, entry.blob)
        try:
            if entry.path.endswith(".ipynb"):
                page = await asyncio.to_thread(
                    lambda: render.with_toc(render.notebook(source, base))
                )
            else:
                page = render.with_toc(render.markdown(source, entry.path))
        except Exception as exc:
            raise BuildError(f"{entry.path} cannot be rendered: {exc}") from exc
        tmp = cached.with_suffix(".tmp")
        tmp.write_text(page)
        tmp.replace(cached)
        return page, True

    async def build(
        self, project_id: str, project: dict[str, Any], branch: str, commit: str
    ) -> Built | None:
        """Render ``commit`` (pushed to ``branch``); None if the project does not publish
        from that branch at that commit. ``BuildError`` if it cannot be published."""
        started = time.monotonic()
        repo = await self.mirror.fetch(project_id, project["clone_url"], branch, commit)
        entries = await self.mirror.files(repo, commit)
        wanted = await self.manifest_at(repo, entries, project["default_branch"])
        if wanted is None or wanted.branch != branch:
            return None
        final = self.site_dir(project_id, commit)
        if final.exists():  # built already (an event handled again after a crash)
            return None
        checkout = self.checkout_dir(project_id, commit)
        if not checkout.exists():
            await self.mirror.checkout(repo, commit, checkout)
        tmp = final.with_name(f".{commit}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        built = Built(commit)
        pages: list[str] = []
        for entry in entries:
            if not wanted.publishes(entry.path):
                continue
            target = tmp / render.html_name(entry.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            dashboard = wanted.dashboard(entry.path)
            if dashboard is not None:
                page = await self._dashboard(repo, entry, dashboard, checkout, built)
            elif render.renders(entry.path):
                page, fresh = await self._rendered(repo, entry, checkout)
                built.rerendered += fresh
            else:
                target.write_bytes(await self.mirror.read(repo, entry.blob))
                built.files += 1
                continue
            target.write_text(page)
            pages.append(render.html_name(entry.path))
            built.files += 1
        missing = [d.path for d in wanted.dashboards if not any(e.path == d.path for e in entries)]
        if missing:
            raise BuildError(f"dashboard {missing[0]} is not in commit {commit[:12]}")
        if not (tmp / "index.html").exists():
            (tmp / "index.html").write_text(index_page(project, commit, pages))
        tmp.rename(final)
        built.seconds = round(time.monotonic() - started, 3)
        return built

    async def _dashboard(
        self,
        repo: Path,
        entry: gitmirror.Entry,
        dashboard: manifest.Dashboard,
        checkout: Path,
        built: Built,
    ) -> str:
        source = await self.mirror.read(repo, entry.blob)
        run = await dashboards.run(dashboard, source, checkout, {}, self.guard)
        message, detail = error_of(run) if not run.ok else ("", "")
        built.dashboards.append(
            {"path": dashboard.path, "seconds": run.seconds, "ok": run.ok, "error": message}
        )
        if not run.ok or run.notebook is None:
            raise BuildError(
                f"dashboard {dashboard.path} failed: {message}", detail, built.dashboards
            )
        return render.with_toc(
            render.notebook(run.notebook, checkout, hide_code=dashboard.hide_code)
        )


def index_page(project: dict[str, Any], commit: str, pages: list[str]) -> str:
    """The listing of a build's pages (when the project has no index of its own)."""
    name = f"{project['owner']}/{project['name']}"
    items = "".join(
        f'<li><a href="{html.escape(p)}">{html.escape(str(PurePosixPath(p)))}</a></li>'
        for p in sorted(pages)
    )
    return render.page(
        name, f"<h1>{html.escape(name)}</h1><p>commit {commit[:12]}</p><ul>{items}</ul>"
    )
