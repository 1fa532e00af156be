"""The publishing service (examples/publish) against a running hub behind its built-in proxy:
the service runs as a process with JupyterHub's service environment, as the hub would start
it, and the browser only talks to the proxy's public address."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pytest

from events import store
from hub.proxy import builtin as proxy
from hub.proxy import routes, table
from tests import ports
from tests.helpers import wait_for
from tests.integration.api_fixtures import CONFIG, Api
from tests.integration.browser import Browser, running_hub, set_password
from tests.integration.git_client import Git, with_token

TOKEN = "publish-service-secret-0123456789abcdef"
SCOPES = ["read:projects", "read:events:projects", "read:users:groups"]
PASSWORD = "publishing pass"


def notebook(*cells: tuple[str, str], tags: dict[int, list[str]] | None = None) -> bytes:
    """A notebook of ``(kind, source)`` cells (``code`` or ``markdown``), without outputs."""
    nb = nbformat.v4.new_notebook()
    for index, (kind, source) in enumerate(cells):
        cell = (
            nbformat.v4.new_code_cell(source)
            if kind == "code"
            else nbformat.v4.new_markdown_cell(source)
        )
        cell.metadata["tags"] = (tags or {}).get(index, [])
        nb.cells.append(cell)
    return nbformat.writes(nb).encode()


def with_outputs(*cells: tuple[str, str, list[dict[str, Any]]]) -> bytes:
    """A notebook of code cells with the given outputs (as saved after a run)."""
    nb = nbformat.v4.new_notebook()
    for _, source, outputs in cells:
        cell = nbformat.v4.new_code_cell(source)
        cell.outputs = [nbformat.from_dict(o) for o in outputs]
        nb.cells.append(cell)
    return nbformat.writes(nb).encode()


@dataclass
class Deployment:
    """The hub (API helper, public URL), the service's URL and log, and a git client."""

    api: Api
    public: str
    service: str
    data_dir: Path
    git: Git
    work: Path
    output: Path
    env: dict[str, str]
    proc: asyncio.subprocess.Process | None = None
    prefix: list[str] = field(default_factory=list)
    """A command the service runs under (``unshare …``), as a wrapper runs it."""

    async def start(self) -> None:
        """Start the service (as the hub would: its environment, its own data directory)."""
        with self.output.open("ab") as out:
            start = out.tell()
            proc = await asyncio.create_subprocess_exec(
                *self.prefix, sys.executable, "-m", "chronohub_publish", env=self.env,
                stdout=out, stderr=out,
            )  # fmt: skip
        self.proc = proc
        await wait_for(
            lambda: (
                b"publish serving at " in self.output.read_bytes()[start:]
                or proc.returncode is not None
            ),
            timeout_s=60,
        )
        assert proc.returncode is None, self.output.read_text()

    async def stop(self) -> None:
        """Stop the service (SIGTERM, as the hub does)."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        self.proc = None

    async def user(self, name: str) -> str:
        """A user with a password, allowed to sign in to the service; their API token."""
        await set_password(self.api, name, PASSWORD)
        return await self.api.user_token(name)

    async def push(self, token: str, owner: str, name: str, files: dict[str, bytes]) -> str:
        """Commit ``files`` into ``owner/name``'s work tree and push it: the commit."""
        work = self.work / f"{owner}-{name}"
        if not work.exists():
            sha = await self.git.new_repo(work, files)
        else:
            sha = await self.git.commit(work, files, "change")
        url = f"{self.public}/hub/git/{owner}/{name}.git"
        await self.git.ok("push", "-q", with_token(url, token), "main", cwd=work)
        return sha

    def log(self) -> list[dict[str, Any]]:
        """The service's own log, oldest first."""
        path = self.data_dir / "log.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    async def signed_in(self, name: str) -> Browser:
        """A browser signed in to the hub as ``name`` (the service's OAuth comes next)."""
        browser = Browser(self.public)
        page = await browser.login(name, PASSWORD)
        assert page.status == 302, page.text
        return browser


async def through_oauth(browser: Browser, url: str) -> Any:
    """Open ``url`` of the service, going through HubOAuth (approving) if it asks."""
    page = await browser.get(url)
    for _ in range(6):
        if page.status != 302:
            return page
        location = page.location or ""
        if location.startswith("/hub/api/oauth2/authorize"):
            consent = await browser.get(location)
            if consent.status == 200 and "approve" in consent.text:
                page = await browser.post(
                    "/hub/api/oauth2/authorize", data=[*consent.fields(), ("approve", "1")]
                )
                continue
            page = consent
            continue
        page = await browser.get(location)
    return page


@contextlib.asynccontextmanager
async def deployment(
    event_store: store.EventStore, tmp_path: Path, users: list[str]
) -> AsyncIterator[Deployment]:
    """chronohub behind its proxy with the publishing service registered and running."""
    port = ports.free_port()
    services = [
        *CONFIG["services"],
        {"name": "publish", "api_token": TOKEN, "url": f"http://127.0.0.1:{port}",
         "oauth_no_confirm": True},
    ]  # fmt: skip
    roles = [
        *CONFIG["roles"],
        {"name": "publish", "scopes": SCOPES, "services": ["publish"]},
        {"name": "publish-readers", "scopes": ["access:services!service=publish"],
         "users": users},
    ]  # fmt: skip
    async with (
        running_hub(
            event_store, services=services, roles=roles, data_dir=tmp_path / "hub",
            project_git_timeout_s=30,
        ) as (api, hub),
        proxy.Proxy(hub) as public_proxy,
    ):  # fmt: skip
        host, proxy_port = await public_proxy.start("127.0.0.1", 0)

        async def to_proxy(routing: list[table.Route]) -> None:
            public_proxy.set_routes(routing)

        follower = routes.RouteFollower(event_store.pool, [to_proxy], 3600)
        await follower.start()
        public = f"http://{host}:{proxy_port}"
        data_dir = tmp_path / "publish"
        env = {
            **os.environ,
            "PUBLISH_DATA_DIR": str(data_dir),
            "JUPYTERHUB_API_TOKEN": TOKEN,
            "JUPYTERHUB_API_URL": hub + "/hub/api",
            "JUPYTERHUB_HOST": "",
            "JUPYTERHUB_BASE_URL": "/",
            "JUPYTERHUB_CLIENT_ID": "service-publish",
            "JUPYTERHUB_SERVICE_NAME": "publish",
            "JUPYTERHUB_SERVICE_PREFIX": "/services/publish/",
            "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}/services/publish/",
            "JUPYTERHUB_OAUTH_CALLBACK_URL": "/services/publish/oauth_callback",
            "JUPYTERHUB_OAUTH_ACCESS_SCOPES": json.dumps(["access:services!service=publish"]),
        }
        found = Deployment(
            api, public, public + "/services/publish/", data_dir,
            Git(tmp_path / "git-home"), tmp_path / "work", tmp_path / "publish.log", env,
        )  # fmt: skip
        try:
            await found.start()
            yield found
        finally:
            await follower.stop()
            await found.stop()


@pytest.fixture
async def published(event_store: store.EventStore, tmp_path: Path) -> AsyncIterator[Deployment]:
    async with deployment(event_store, tmp_path, ["alice", "bob", "carol"]) as found:
        yield found
