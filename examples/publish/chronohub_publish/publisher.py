"""The service's work: follow the stream, publish each push, re-run dashboards on schedule."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chronohub_publish import dashboards, gitmirror, hubapi, manifest, render, sandbox, site, state

log = logging.getLogger("publish")
TYPES = "project.created,project.renamed,project.deleted,project.pushed"
REFRESH_CHECK_S = 15.0


class Publisher:
    """Owns the state; ``follow`` and ``refresh`` are its two long-running loops."""

    def __init__(
        self,
        data_dir: Path,
        api: hubapi.Api,
        service: str = "publish",
        *,
        sandboxed: bool = True,
        hide: Sequence[Path] = (),
    ) -> None:
        self.api = api
        self.service = service
        self.store = state.Store(data_dir)
        self.state = self.store.load()
        self.guard = sandbox.Guard(data_dir, sandboxed, hide)
        mirror = gitmirror.Mirror(data_dir / "mirrors", api.token)
        self.builder = site.Builder(data_dir, mirror, self.guard)
        self.runs = asyncio.Semaphore(2)
        self.last_refresh: dict[tuple[str, str], float] = {}

    async def follow(self) -> None:
        """Handle every project event after the saved cursor, forever."""
        async for event_id, event in self.api.follow(TYPES, self.state.cursor):
            await self.handle(event)
            self.state.cursor = event_id
            self.store.save(self.state)

    async def handle(self, event: dict[str, Any]) -> None:
        """Apply one project event."""
        kind, data = event["type"], event["data"]
        project_id = data["project_id"]
        if kind == "project.created" or kind == "project.renamed":
            self.state.projects[project_id] = {"owner": data["owner"], "name": data["name"]}
        elif kind == "project.deleted":
            self.state.projects.pop(project_id, None)
            self.state.sites.pop(project_id, None)
        elif kind == "project.pushed" and project_id in self.state.projects:
            for ref in data["refs"]:
                if ref["ref"].startswith("refs/heads/") and ref["new"] != site.ZERO:
                    await self.publish(
                        project_id, ref["ref"].removeprefix("refs/heads/"), ref["new"]
                    )

    async def publish(self, project_id: str, branch: str, commit: str) -> None:
        """Build ``commit``; on success it becomes the latest, on failure the error is kept."""
        known = self.state.projects[project_id]
        full_name = f"{known['owner']}/{known['name']}"
        pages = self.state.site(project_id)
        if commit in pages.built:
            return
        try:
            project = await self.api.project(known["owner"], known["name"])
            built = await self.builder.build(project_id, project, branch, commit)
        except hubapi.HubError as exc:
            log.warning("%s: %s", full_name, exc)
            return
        except (site.BuildError, gitmirror.GitError, OSError) as exc:
            # OSError: a disk full or a file the service cannot write fails this build, not
            # the service (which would otherwise die on this event at every restart)
            detail = exc.detail if isinstance(exc, site.BuildError) else str(exc)
            pages.error = {"commit": commit, "message": str(exc), "detail": detail}
            for run in exc.runs if isinstance(exc, site.BuildError) else []:
                await self._record("dashboard.run", full_name, commit=commit, trigger="push", **run)
            await self._record("publish.failed", full_name, commit=commit, branch=branch,
                              error=str(exc).splitlines()[0][:300])  # fmt: skip
            return
        if built is None:
            return
        pages.latest = commit
        pages.built.append(commit)
        pages.error = None
        for run in built.dashboards:
            await self._record("dashboard.run", full_name, commit=commit, trigger="push", **run)
        await self._record(
            "published", full_name, commit=commit, branch=branch, files=built.files,
            rerendered=built.rerendered, seconds=built.seconds,
        )  # fmt: skip
        log.info("%s: published %s (%d rendered)", full_name, commit[:12], built.rerendered)

    async def dashboard_page(
        self, project_id: str, commit: str, path: str, parameters: dict[str, Any],
        dashboard: manifest.Dashboard,
    ) -> tuple[str, bool]:  # fmt: skip
        """The page of a dashboard run with ``parameters`` (cached per parameter set) and
        whether it succeeded."""
        runs = self.builder.runs_dir(project_id, commit, path)
        cached = runs / f"{dashboards.parameter_key(parameters)}.html"
        if cached.exists():
            return cached.read_text(), True
        ok, page = await self._run(project_id, commit, dashboard, parameters, "query")
        if ok:
            runs.mkdir(parents=True, exist_ok=True)
            cached.write_text(page)
        return page, ok

    async def _run(
        self, project_id: str, commit: str, dashboard: manifest.Dashboard,
        parameters: dict[str, Any], trigger: str,
    ) -> tuple[bool, str]:  # fmt: skip
        known = self.state.projects[project_id]
        full_name = f"{known['owner']}/{known['name']}"
        checkout = self.builder.checkout_dir(project_id, commit)
        source = (checkout / dashboard.path).read_bytes()
        async with self.runs:
            run = await dashboards.run(dashboard, source, checkout, parameters, self.guard)
        message = site.error_of(run)[0] if not run.ok else ""
        await self._record("dashboard.run", full_name, commit=commit, path=dashboard.path,
                          trigger=trigger, seconds=run.seconds, ok=run.ok, error=message,
                          parameters=sorted(parameters))  # fmt: skip
        if not run.ok or run.notebook is None:
            return False, site.failure_page(dashboard.path, run)
        page = await asyncio.to_thread(
            lambda: render.with_toc(
                render.notebook(run.notebook, checkout, hide_code=dashboard.hide_code)
            )
        )
        return True, page

    def manifest_of(self, project_id: str, commit: str) -> manifest.Manifest | None:
        """The ``publish.toml`` of a built commit (from its checkout)."""
        found = self.builder.checkout_dir(project_id, commit) / manifest.FILE_NAME
        if not found.exists():
            return None
        return manifest.parse(found.read_text(), "main")

    async def refresh(self) -> None:
        """Re-run, forever, the latest commit's dashboards whose ``refresh`` has come."""
        while True:
            pause = REFRESH_CHECK_S
            for project_id, pages in list(self.state.sites.items()):
                if pages.latest is None or project_id not in self.state.projects:
                    continue
                wanted = self.manifest_of(project_id, pages.latest)
                for dashboard in wanted.dashboards if wanted else ():
                    # a schedule shorter than the check is checked as often as it asks
                    pause = min(pause, dashboard.refresh_s or pause)
                    try:
                        await self._refresh_one(project_id, pages.latest, dashboard)
                    except OSError as exc:  # logged; the next check tries again
                        log.warning("refresh of %s: %s", dashboard.path, exc)
            await asyncio.sleep(pause)

    async def _refresh_one(
        self, project_id: str, commit: str, dashboard: manifest.Dashboard
    ) -> None:
        if dashboard.refresh_s is None:
            return
        key = (project_id, dashboard.path)
        now = time.monotonic()
        last = self.last_refresh.setdefault(key, now)
        if now - last < dashboard.refresh_s:
            return
        self.last_refresh[key] = now
        ok, page = await self._run(project_id, commit, dashboard, {}, "schedule")
        if ok:  # a failed refresh leaves the last good run online
            runs = self.builder.runs_dir(project_id, commit, dashboard.path)
            runs.mkdir(parents=True, exist_ok=True)
            tmp = runs / "default.tmp"
            tmp.write_text(page)
            tmp.replace(runs / "default.html")

    async def _record(self, kind: str, full_name: str, **data: Any) -> None:
        """Note what happened in the service's own log (its pages show it to members) and
        report it to the hub's log, where the audit API, the stream and webhooks show it."""
        self.store.record(kind, full_name, **data)
        await self.api.report(self.service, kind, full_name, data)
