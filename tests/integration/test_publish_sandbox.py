"""Dashboards run in a sandbox (issue 17): a project member's notebook, run by the publishing
service, reaches nothing of the service's (its state, other projects' pages, its process), of
the hub's (its data directory, its address), nor the file system outside its working
directory; where bubblewrap cannot run, dashboards are refused with the reason, unless the
service's configuration opts out (``PUBLISH_SANDBOX=false``, unsafe, shown here too).

Attacker style: one parameterised dashboard tries each thing in turn (``?action=…&target=…``)
and its page must show the failure, named."""

from __future__ import annotations

import html
import json
import re
import shutil
import sys
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from chronohub_publish import sandbox

from hub import settings as hub_settings
from tests.helpers import wait_for
from tests.integration.browser import Browser
from tests.integration.publish_fixtures import TOKEN, Deployment, notebook, through_oauth
from tests.integration.test_publish import published_commit

pytestmark = [pytest.mark.integration, pytest.mark.collab, pytest.mark.interop]

MANIFEST = b"""
[[dashboards]]
path = "probe.ipynb"
timeout = "60s"
parameters = { action = "none", target = "" }
"""
ATTACK = """\
import os, pathlib, socket
if action == 'read':
    print('read:', pathlib.Path(target).read_bytes()[:300])
elif action == 'list':
    print('listed:', os.listdir(target))
elif action == 'write':
    pathlib.Path(target).write_text('written by a dashboard')
elif action == 'connect':
    host, port = target.rsplit(':', 1)
    socket.create_connection((host, int(port)), timeout=5).close()
else:
    pathlib.Path('made-by-the-run.txt').write_text('scratch')
    print('normal run:', open('data.txt').read().strip(), 'in', os.getcwd())
print('reached', action, target)
"""
PROBE = notebook(
    ("code", "action = 'none'\ntarget = ''"), ("code", ATTACK), tags={0: ["parameters"]}
)

needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap (Debian: bubblewrap) is not installed"
)


def text_of(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page))


async def site_of(deployment: Deployment, owner: str, name: str) -> Path:
    """The directory of ``owner/name``'s latest build, from the service's state (which the
    service may write a moment after it logged the build)."""
    found: list[Path] = []

    def recorded() -> bool:
        state = json.loads((deployment.data_dir / "state.json").read_text())
        for project_id, project in state["projects"].items():
            site = state.get("sites", {}).get(project_id)
            if (project["owner"], project["name"]) == (owner, name) and site:
                found.append(deployment.data_dir / "sites" / str(project_id) / site["latest"])
                return True
        return False

    await wait_for(recorded, timeout_s=30, every_s=0.1)
    return found[-1]


@needs_bwrap
async def test_a_dashboard_reaches_nothing_outside_its_sandbox(
    published: Deployment, tmp_path: Path
) -> None:
    alice = await published.user("alice")
    for name, visibility in (("secret", "private"), ("probe", "public")):
        status, _ = await published.api.call(
            "POST", "/projects", alice, json={"name": name, "visibility": visibility}
        )
        assert status == 201
    secret = await published.push(alice, "alice", "secret", {
        "publish.toml": b"", "plans.md": b"# Plans\n\nthe private plans 8412\n",
    })  # fmt: skip
    await published_commit(published, secret)
    private_page = (await site_of(published, "alice", "secret")) / "plans.html"
    assert "the private plans 8412" in private_page.read_text()

    commit = await published.push(alice, "alice", "probe", {
        "publish.toml": MANIFEST, "probe.ipynb": PROBE, "data.txt": b"hello 7\n",
    })  # fmt: skip
    await published_commit(published, commit)
    reader = Browser(published.public)
    page = "/services/publish/alice/probe/probe.html"
    try:
        # a normal run: its working directory is (a copy of) the commit's files, writable
        normal = await reader.get(page)
        assert normal.status == 200, normal.text
        assert "normal run: hello 7 in /home/dashboard" in text_of(normal.text)
        checkout = (await site_of(published, "alice", "probe")).parent.parent.parent / "checkouts"
        assert list(checkout.rglob("data.txt"))  # the service's own checkout of the commit…
        assert not list(checkout.rglob("made-by-the-run.txt"))  # …which the run did not touch

        assert published.proc is not None
        hub = urlsplit(published.env["JUPYTERHUB_API_URL"])
        public = urlsplit(published.public)
        attacks = [
            # the service's state (which holds every project's name and cursor)
            ("read", str(published.data_dir / "state.json"), "FileNotFoundError"),
            # another project's page, private
            ("read", str(private_page), "FileNotFoundError"),
            # the hub's data directory
            ("list", str(tmp_path / "hub"), "FileNotFoundError"),
            # the service's process, its environment (its token)
            ("read", f"/proc/{published.proc.pid}/environ", "FileNotFoundError"),
            # writing outside its working directory: the service's data, the code it runs
            ("write", str(published.data_dir / "planted.txt"), "FileNotFoundError"),
            ("write", str(sandbox.PACKAGE / "planted.py"),
             "OSError: [Errno 30] Read-only file system"),
            # the network: the hub, directly and through the proxy
            ("connect", f"{hub.hostname}:{hub.port}", "ConnectionRefusedError"),
            ("connect", f"{public.hostname}:{public.port}", "ConnectionRefusedError"),
        ]  # fmt: skip
        for action, target, error in attacks:
            seen = await reader.get(f"{page}?{urlencode({'action': action, 'target': target})}")
            shown = text_of(seen.text)
            assert seen.status == 500, (action, target, shown[-2000:])
            assert "This dashboard failed" in shown, (action, target)
            assert f"cell 2: {error}" in shown, (action, target, shown[-2000:])
            assert f"reached {action}" not in shown, (action, target)
        assert not (published.data_dir / "planted.txt").exists()
        assert not (sandbox.PACKAGE / "planted.py").exists()
        assert TOKEN not in json.dumps(published.log())
    finally:
        await reader.close()


@needs_bwrap
async def test_a_dashboard_cannot_read_the_hubs_secrets_beside_its_configuration(
    published: Deployment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hub's configuration directory (deployments: /etc/chronohub, readable by the hub's
    account, which the service runs as) holds its secrets; it lies in a tree the sandbox binds
    (here the Python environment, standing for /etc). The hub names it to the service
    (``PUBLISH_HIDE``), whose sandbox covers it."""
    config_dir = Path(sys.prefix) / f"chronohub-test-{tmp_path.name}"
    config_dir.mkdir(mode=0o750)
    try:
        (config_dir / "chronohub.toml").write_text("publish = true\n")
        secret = config_dir / "chronohub.env"
        secret.write_text("CHRONOHUB_DATABASE_URL=postgresql://hub:pw-5521@localhost/hub\n")
        monkeypatch.setenv(hub_settings.CONFIG_ENV, str(config_dir / "chronohub.toml"))
        hub_config = hub_settings.Settings(
            database_url="postgresql://unused", publish=True, data_dir=tmp_path / "hub"
        )
        [service] = [s for s in hub_config.services if s.name == "publish"]
        await published.stop()
        published.env.update(service.environment)  # what the hub gives its managed service
        await published.start()

        alice = await published.user("alice")
        status, _ = await published.api.call(
            "POST", "/projects", alice, json={"name": "probe", "visibility": "public"}
        )
        assert status == 201
        commit = await published.push(alice, "alice", "probe", {
            "publish.toml": MANIFEST, "probe.ipynb": PROBE, "data.txt": b"hello 5\n",
        })  # fmt: skip
        await published_commit(published, commit)
        reader = Browser(published.public)
        page = "/services/publish/alice/probe/probe.html"
        try:
            for action, target in (("read", str(secret)), ("list", str(config_dir))):
                query = urlencode({"action": action, "target": target})
                seen = await reader.get(f"{page}?{query}")
                shown = text_of(seen.text)
                assert "pw-5521" not in shown
                if action == "read":
                    assert seen.status == 500, shown[-2000:]
                    assert "cell 2: FileNotFoundError" in shown, shown[-2000:]
                else:  # an empty directory over it
                    assert seen.status == 200, shown[-2000:]
                    assert "listed: []" in shown, shown[-2000:]
        finally:
            await reader.close()
    finally:
        shutil.rmtree(config_dir)


@needs_bwrap
async def test_where_bubblewrap_cannot_run_dashboards_are_refused_unless_the_service_opts_out(
    published: Deployment,
) -> None:
    """The service's account may not create user namespaces (a nested user namespace whose
    limit is spent, as a locked-down host has it): each dashboard is refused, its members see
    why; ``PUBLISH_SANDBOX=false`` runs it unsandboxed, where it reads the service's files."""
    alice = await published.user("alice")
    status, _ = await published.api.call(
        "POST", "/projects", alice, json={"name": "locked", "visibility": "public"}
    )
    assert status == 201
    await published.stop()
    # the service as an ordinary account (1000) of a user namespace whose parent allows one
    # namespace, its own: bubblewrap's is refused (ENOSPC)
    limit = 'echo 1 > /proc/sys/user/max_user_namespaces && exec "$@"'
    published.prefix = [
        "unshare", "--user", "--map-root-user", "sh", "-c", limit, "sh",
        "unshare", "--user", "--map-user=1000", "--map-group=1000",
    ]  # fmt: skip
    await published.start()

    refused = await published.push(alice, "alice", "locked", {
        "publish.toml": MANIFEST, "probe.ipynb": PROBE, "data.txt": b"hello 8\n",
    })  # fmt: skip
    await published_commit(published, refused)
    [failed] = [e for e in published.log() if e["type"] == "publish.failed"]
    assert "bubblewrap cannot run here" in failed["error"], failed
    [run] = [e for e in published.log() if e["type"] == "dashboard.run"]
    assert run["ok"] is False
    member = await published.signed_in("alice")
    try:
        page = "/services/publish/alice/locked/probe.html"
        shown = await through_oauth(member, f"/services/publish/_signin?next={page}")
        text = text_of(shown.text)
        assert "The build of commit" in text, text
        assert "bubblewrap cannot run here" in text
        assert "Creating new namespace failed" in text  # bubblewrap's own words
        assert "PUBLISH_SANDBOX=false" in text  # and what an admin can do
    finally:
        await member.close()

    # opting out: the same dashboard runs, as the service, and can read the service's state
    await published.stop()
    published.env["PUBLISH_SANDBOX"] = "false"
    await published.start()
    assert "dashboards run UNSANDBOXED" in published.output.read_text()
    unsafe = await published.push(alice, "alice", "locked", {"data.txt": b"hello 9\n"})
    await published_commit(published, unsafe)
    reader = Browser(published.public)
    try:
        page = "/services/publish/alice/locked/probe.html"
        normal = await reader.get(page)
        assert normal.status == 200, normal.text
        assert "normal run: hello 9" in text_of(normal.text)
        state = str(published.data_dir / "state.json")
        leaked = await reader.get(f"{page}?{urlencode({'action': 'read', 'target': state})}")
        assert leaked.status == 200, text_of(leaked.text)[-2000:]
        assert "cursor" in text_of(leaked.text)  # what the sandbox keeps a dashboard from
    finally:
        await reader.close()
