"""``publish = true``, the one configuration line: ``chronohub serve`` runs the publishing
service as a managed service (the installed ``chronohub_publish``) with the role it needs, and
a push to a project with a ``publish.toml`` is served at ``/services/publish/``."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.helpers import service_toml, wait_for
from tests.integration.git_client import Git, with_token
from tests.integration.test_idle_culler import SETUP_TOKEN, serving

pytestmark = [pytest.mark.integration, pytest.mark.interop]


async def test_one_line_runs_the_publishing_service(db_url: str, tmp_path: Path) -> None:
    config = "publish = true\n" + service_toml(
        SETUP_TOKEN, ["admin:users", "tokens", "read:services", "read:events"], "setup"
    )
    async with serving(db_url, tmp_path, config) as hub:
        status, reply = await hub.call("POST", "/users/u01/tokens", json={})
        assert status == 201, reply
        alice = reply["token"]
        headers = {"Authorization": f"token {alice}"}
        async with hub.session.post(
            hub.api + "/projects", json={"name": "site", "visibility": "public"}, headers=headers
        ) as response:
            assert response.status == 201, await response.text()
            clone_url = (await response.json())["clone_url"]

        async def running() -> bool:
            status, service = await hub.call("GET", "/services/publish")
            assert status == 200, service
            return bool(service["state"] == "running")

        await wait_for(running, timeout_s=60, every_s=0.2)
        _, service = await hub.call("GET", "/services/publish")
        assert service["command"] == ["python3", "-m", "chronohub_publish"]

        git = Git(tmp_path / "git-home")
        work = tmp_path / "site"
        await git.new_repo(work, {"publish.toml": b"", "index.md": b"# Welcome 31337\n"})
        await git.ok("push", "-q", with_token(clone_url, alice), "main", cwd=work)
        page = hub.url.removesuffix("hub/") + "services/publish/u01/site/index.html"

        async def served() -> bool:
            async with aiohttp.ClientSession() as session, session.get(page) as response:
                return response.status == 200 and "Welcome 31337" in await response.text()

        await wait_for(served, timeout_s=90, every_s=0.5)
        # any user may sign in to the service (the user role has access to it), and the
        # build is in the hub's log, reported by the service
        async with hub.session.get(hub.api + "/user", headers=headers) as response:
            assert response.status == 200
            assert "access:services!service=publish" in (await response.json())["scopes"]

        async def reported() -> bool:
            async with hub.session.get(
                hub.api + "/events",
                params={"type": "service.reported"},
                headers={"Authorization": f"token {SETUP_TOKEN}"},
            ) as response:
                if response.status != 200:
                    return False
                return any(e["data"]["kind"] == "published" for e in await response.json())

        await wait_for(reported, timeout_s=30, every_s=0.2)
