"""The publishing service (examples/publish) end to end: real git pushes through the hub, the
event stream, nbconvert and nbclient kernels, HubOAuth sign-in through the proxy."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests import ports
from tests.helpers import wait_for
from tests.integration.browser import Browser
from tests.integration.publish_fixtures import Deployment, notebook, through_oauth

pytestmark = [pytest.mark.integration, pytest.mark.collab, pytest.mark.interop]

MANIFEST = b"""
branch = "main"
paths = ["*.ipynb", "*.md", "data/*"]

[[dashboards]]
path = "dash.ipynb"
hide_code = true
timeout = "60s"
parameters = { n = 3, label = "squares" }
"""
DASH = notebook(
    ("code", "n = 3\nlabel = 'squares'"),
    (
        "code",
        "rows = open('data/base.txt').read().strip()\n"
        "print(label, rows, [i * i for i in range(n)])",
    ),
    tags={0: ["parameters"]},
)


def analysis(title: str, value: int) -> bytes:
    return notebook(("markdown", f"# {title}\n\n## Method"), ("code", f"print({value} * 2)"))


def ran(notebook_source: str, output: str) -> bytes:
    """A notebook whose one cell has ``output`` saved (as pushed after a run)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(notebook_source)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=output)]
    nb.cells.append(cell)
    return nbformat.writes(nb).encode()


async def published_commit(deployment: Deployment, commit: str, timeout_s: float = 90) -> None:
    """Wait until the service has published (or failed to publish) ``commit``."""

    def done() -> bool:
        return any(
            e.get("commit") == commit for e in deployment.log() if e["type"] != "dashboard.run"
        )

    try:
        await wait_for(done, timeout_s=timeout_s, every_s=0.1)
    except AssertionError:
        raise AssertionError(deployment.output.read_text()[-4000:]) from None


async def test_a_push_is_published_at_both_urls_and_the_next_push_moves_only_the_latest(
    published: Deployment,
) -> None:
    alice = await published.user("alice")
    status, _ = await published.api.call(
        "POST", "/projects", alice, json={"name": "course", "visibility": "public"}
    )
    assert status == 201
    first = await published.push(alice, "alice", "course", {
        "publish.toml": MANIFEST,
        "intro.ipynb": ran("print('hello')", "first output 4242\n"),
        "guide.md": b"# Guide\n\nSome *text*.\n",
        "dash.ipynb": DASH,
        "data/base.txt": b"from-the-commit\n",
        "secret.py": b"not published\n",
    })  # fmt: skip
    await published_commit(published, first)
    [entry] = [e for e in published.log() if e["type"] == "published"]
    assert (entry["project"], entry["commit"]) == ("alice/course", first)
    assert entry["rerendered"] == 2  # intro.ipynb, guide.md; the dashboard ran

    anonymous = Browser(published.public)
    try:
        latest = await anonymous.get("/services/publish/alice/course/intro.html")
        assert latest.status == 200, latest.text
        assert "first output 4242" in latest.text
        assert "sandbox" in latest.response.headers["Content-Security-Policy"]
        assert "allow-scripts" not in latest.response.headers["Content-Security-Policy"]
        assert latest.response.headers["Cache-Control"] == "no-cache"
        pinned = await anonymous.get(f"/services/publish/alice/course/@{first}/intro.html")
        assert pinned.status == 200
        assert pinned.text == latest.text
        assert pinned.response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        index = await anonymous.get("/services/publish/alice/course/")
        assert 'href="intro.html"' in index.text
        assert "secret.py" not in index.text
        assert (await anonymous.get("/services/publish/alice/course/secret.py")).status == 404
        guide = await anonymous.get("/services/publish/alice/course/guide.html")
        assert "<em>text</em>" in guide.text
        assert "publish-toc" in guide.text
        data = await anonymous.get("/services/publish/alice/course/data/base.txt")
        assert data.text == "from-the-commit\n"

        # the dashboard ran in the commit's files, its code hidden
        dash = await anonymous.get("/services/publish/alice/course/dash.html")
        assert "squares from-the-commit [0, 1, 4]" in dash.text
        assert "open(&#39;data/base.txt&#39;)" not in dash.text
        assert "data/base.txt" not in dash.text
        # parameters, papermill's way; cached per parameter set
        runs = len([e for e in published.log() if e["type"] == "dashboard.run"])
        five = await anonymous.get("/services/publish/alice/course/dash.html?n=5&label=cubes")
        assert five.status == 200, five.text
        assert "cubes from-the-commit [0, 1, 4, 9, 16]" in five.text
        again = await anonymous.get("/services/publish/alice/course/dash.html?label=cubes&n=5")
        assert again.text == five.text
        assert len([e for e in published.log() if e["type"] == "dashboard.run"]) == runs + 1
        bad = await anonymous.get("/services/publish/alice/course/dash.html?m=1")
        assert bad.status == 400
        assert "unknown parameter 'm'" in html.unescape(bad.text)
        bad = await anonymous.get("/services/publish/alice/course/dash.html?n=lots")
        assert bad.status == 400
        assert "parameter 'n': int expected" in html.unescape(bad.text)

        second = await published.push(alice, "alice", "course", {
            "intro.ipynb": ran("print('hello')", "second output 777\n"),
        })  # fmt: skip
        await published_commit(published, second)
        last = [e for e in published.log() if e["type"] == "published"][-1]
        assert (last["commit"], last["rerendered"]) == (second, 1)
        latest = await anonymous.get("/services/publish/alice/course/intro.html")
        assert "second output 777" in latest.text
        old = await anonymous.get(f"/services/publish/alice/course/@{first}/intro.html")
        assert old.text == pinned.text
        assert "first output 4242" in old.text
    finally:
        await anonymous.close()
    # the hub's log has what the service did (service.reported on its stream), as the
    # audit API shows it, with no file contents
    reports = await hub_reports(published)
    assert [(r["kind"], r["subject"], r["data"].get("commit")) for r in reports
            if r["kind"] == "published"] == [
        ("published", "alice/course", first), ("published", "alice/course", second)
    ]  # fmt: skip
    assert any(r["kind"] == "dashboard.run" for r in reports)
    assert "first output 4242" not in json.dumps(reports)


async def hub_reports(published: Deployment) -> list[dict[str, Any]]:
    """The publishing service's reports in the hub's log, oldest first (as an admin reads
    them through the audit API)."""
    admin = await published.api.user_token("admin")
    status, listed = await published.api.call(
        "GET", "/events?type=service.reported&limit=200", admin
    )
    assert status == 200, listed
    return [e["data"] for e in listed if e["data"]["name"] == "publish"]


async def test_a_private_project_is_served_to_members_only_after_signing_in(
    published: Deployment,
) -> None:
    alice = await published.user("alice")
    await published.user("bob")
    await published.user("carol")
    assert (await published.api.call("POST", "/projects", alice, json={"name": "notes"}))[0] == 201
    status, _ = await published.api.call(
        "PUT", "/projects/alice/notes/members/users/bob", alice, json={"role": "read"}
    )
    assert status == 204 or status == 200
    commit = await published.push(alice, "alice", "notes", {
        "publish.toml": b'paths = ["*.ipynb"]\n',
        "private.ipynb": ran("print('x')", "members only 1234\n"),
    })  # fmt: skip
    await published_commit(published, commit)
    page = "/services/publish/alice/notes/private.html"

    anonymous = Browser(published.public)
    carol = await published.signed_in("carol")
    bob = await published.signed_in("bob")
    try:
        refused = await anonymous.get(page)
        assert refused.status == 302  # to the hub's sign-in, through HubOAuth
        assert (refused.location or "").startswith("/hub/api/oauth2/authorize")
        assert "members only" not in refused.text
        pinned = await anonymous.get(f"/services/publish/alice/notes/@{commit}/private.html")
        assert pinned.status == 302

        not_member = await through_oauth(carol, page)
        assert not_member.status == 404, not_member.text
        assert "members only" not in not_member.text

        member = await through_oauth(bob, page)
        assert member.status == 200, member.text
        assert "members only 1234" in member.text
        pinned = await bob.get(f"/services/publish/alice/notes/@{commit}/private.html")
        assert pinned.response.headers["Cache-Control"] == "private, max-age=31536000, immutable"

        # hub visibility: any signed-in user
        status, _ = await published.api.call(
            "PATCH", "/projects/alice/notes", alice, json={"visibility": "hub"}
        )
        assert status == 200

        async def carol_reads() -> bool:
            return (await carol.get(page)).status == 200

        await wait_for(carol_reads, timeout_s=15, every_s=0.5)
        assert (await anonymous.get(page)).status == 302
    finally:
        for browser in (anonymous, carol, bob):
            await browser.close()


async def test_a_failing_dashboard_shows_its_error_to_members_and_the_last_good_version_stays(
    published: Deployment,
) -> None:
    alice = await published.user("alice")
    await published.user("carol")
    status, _ = await published.api.call(
        "POST", "/projects", alice, json={"name": "board", "visibility": "public"}
    )
    assert status == 201
    manifest = b'[[dashboards]]\npath = "board.ipynb"\nparameters = { fail = false }\n'
    good = await published.push(alice, "alice", "board", {
        "publish.toml": manifest,
        "board.ipynb": notebook(
            ("code", "fail = False"),
            ("code", "if fail:\n    raise ValueError('asked to fail')\nprint('good run 5150')"),
            tags={0: ["parameters"]},
        ),
    })  # fmt: skip
    await published_commit(published, good)
    bad = await published.push(alice, "alice", "board", {
        "board.ipynb": notebook(
            ("code", "total = 1"),
            ("code", "raise RuntimeError('the numbers do not add up')"),
        ),
    })  # fmt: skip
    await published_commit(published, bad)
    [failed] = [e for e in published.log() if e["type"] == "publish.failed"]
    assert failed["commit"] == bad
    assert "cell 2: RuntimeError: the numbers do not add up" in failed["error"]
    runs = [e for e in published.log() if e["type"] == "dashboard.run"]
    assert [(r["commit"], r["ok"]) for r in runs] == [(good, True), (bad, False)]
    assert "seconds" in runs[0]
    # and in the hub's log: the failure, named, beside the push that caused it
    [reported] = [r for r in await hub_reports(published) if r["kind"] == "publish.failed"]
    assert (reported["subject"], reported["data"]["commit"]) == ("alice/board", bad)
    assert "the numbers do not add up" in reported["data"]["error"]

    page = "/services/publish/alice/board/board.html"
    anonymous = Browser(published.public)
    alice_browser = await published.signed_in("alice")
    try:
        seen = await anonymous.get(page)
        assert seen.status == 200
        assert "good run 5150" in seen.text  # the last good version stays online
        assert "failed" not in seen.text  # the error is for the project's members
        own = await through_oauth(alice_browser, f"/services/publish/_signin?next={page}")
        assert own.status == 200, own.text
        assert "good run 5150" in own.text
        assert "The build of commit" in own.text
        assert "cell 2: RuntimeError: the numbers do not add up" in html.unescape(own.text)
        assert "raise RuntimeError" in html.unescape(own.text)  # the failing cell
        assert (
            await anonymous.get(f"/services/publish/alice/board/@{bad}/board.html")
        ).status == 404

        # a parameter set that raises: its error and the failing cell, on the page
        failing = await anonymous.get(page + "?fail=true")
        assert failing.status == 500
        text = html.unescape(re.sub(r"<[^>]+>", "", failing.text))
        assert "This dashboard failed" in text
        assert "cell 2: ValueError: asked to fail" in text
        assert "raise ValueError('asked to fail')" in text  # the failing cell, code shown
    finally:
        await anonymous.close()
        await alice_browser.close()


def hostile_notebook(beacon: str) -> bytes:
    """Script in markdown (a tag, an event handler) and in outputs (HTML, JavaScript), each
    calling ``beacon`` if it ever runs."""
    import nbformat

    call = f"fetch('{beacon}/' + "
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell(
        f"# Hostile\n\n<script>{call}'markdown-script')</script>\n\n"
        f"<img src=\"data:,x\" onerror=\"{call}'markdown-onerror')\">\n"
    ))  # fmt: skip
    cell = nbformat.v4.new_code_cell("display(evil)")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={
            "text/html": f"<script>{call}'output-script'); window.parent.{call}'parent')</script>"
                         f"<svg onload=\"{call}'output-svg')\"></svg>",
        }),
        nbformat.v4.new_output("display_data", data={
            "application/javascript": f"{call}'output-javascript')",
            "text/plain": "<IPython.core.display.Javascript object>",
        }),
    ]  # fmt: skip
    nb.cells.append(cell)
    return nbformat.writes(nb).encode()


async def test_a_hostile_notebook_runs_no_script_in_chromium(
    published: Deployment, tmp_path: Path
) -> None:
    from aiohttp import web
    from playwright.async_api import async_playwright

    from tests.integration.test_journey import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        pytest.skip("no Chromium at /usr/bin/chromium for the in-browser check")
    calls: list[str] = []
    pages: dict[str, str] = {}

    async def beacon(request: web.Request) -> web.Response:
        calls.append(request.match_info["what"])
        return web.Response(text="", headers={"Access-Control-Allow-Origin": "*"})

    async def plain(request: web.Request) -> web.Response:
        # the same HTML without the service's headers: the control that proves the script
        # survived rendering, so it is the sandbox that stops it
        return web.Response(text=pages["copy"], content_type="text/html")

    app = web.Application()
    app.add_routes([web.get("/beacon/{what}", beacon), web.get("/copy", plain)])
    runner = web.AppRunner(app)
    await runner.setup()
    port = ports.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        alice = await published.user("alice")
        status, _ = await published.api.call(
            "POST", "/projects", alice, json={"name": "evil", "visibility": "public"}
        )
        assert status == 201
        commit = await published.push(alice, "alice", "evil", {
            "publish.toml": b"",
            "hostile.ipynb": hostile_notebook(f"http://127.0.0.1:{port}/beacon"),
            "notes.md": f"<script>fetch('http://127.0.0.1:{port}/beacon/md-file')</script>\n"
                        .encode(),
        })  # fmt: skip
        await published_commit(published, commit)
        async with async_playwright() as playwright:
            chromium = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS
            )
            try:
                page = await chromium.new_page()
                page.set_default_timeout(30_000)
                blocked: list[str] = []
                page.on("console", lambda m: blocked.append(m.text))
                for path in ("hostile.html", "notes.html", f"@{commit}/hostile.html"):
                    response = await page.goto(f"{published.service}alice/evil/{path}")
                    assert response is not None
                    assert response.status == 200
                    await page.wait_for_load_state("load")
                    if "hostile" in path:
                        pages["copy"] = await response.text()
                        assert "Hostile" in pages["copy"]
                        assert "output-javascript" not in pages["copy"]  # dropped
                assert calls == []  # no script ran: not the page's, not its outputs'
                assert any("sandboxed" in text and "allow-scripts" in text for text in blocked)

                await page.goto(f"http://127.0.0.1:{port}/copy")
                await wait_for(lambda: "output-script" in calls, timeout_s=10)
                assert "markdown-script" in calls  # the rendering kept it: the sandbox stops it
            finally:
                await chromium.close()
    finally:
        await runner.cleanup()


async def test_after_a_restart_the_service_publishes_what_it_missed_and_nothing_twice(
    published: Deployment,
) -> None:
    alice = await published.user("alice")
    status, _ = await published.api.call(
        "POST", "/projects", alice, json={"name": "log", "visibility": "public"}
    )
    assert status == 201
    files = {"publish.toml": b"", "a.md": b"# one\n"}
    first = await published.push(alice, "alice", "log", files)
    await published_commit(published, first)
    await published.stop()
    second = await published.push(alice, "alice", "log", {"a.md": b"# two\n"})
    third = await published.push(alice, "alice", "log", {"a.md": b"# three\n"})
    await published.start()
    await published_commit(published, third)
    await published.stop()
    await published.start()  # again: the cursor was saved, nothing is handled twice
    fourth = await published.push(alice, "alice", "log", {"a.md": b"# four\n"})
    await published_commit(published, fourth)
    done = [e["commit"] for e in published.log() if e["type"] == "published"]
    assert done == [first, second, third, fourth]
    reader = Browser(published.public)
    try:
        assert "four" in (await reader.get("/services/publish/alice/log/a.html")).text
        assert "two" in (await reader.get(f"/services/publish/alice/log/@{second}/a.html")).text
    finally:
        await reader.close()


async def test_a_dashboard_runs_within_its_memory_and_time_limits(published: Deployment) -> None:
    alice = await published.user("alice")
    status, _ = await published.api.call(
        "POST", "/projects", alice, json={"name": "limits", "visibility": "public"}
    )
    assert status == 201
    hungry = await published.push(alice, "alice", "limits", {
        "publish.toml": b'[[dashboards]]\npath = "d.ipynb"\nmemory_mb = 512\n',
        "d.ipynb": notebook(("code", "import os\nprint(os.getpid())"),
                            ("code", "block = bytearray(1024 ** 3)")),
    })  # fmt: skip
    await published_commit(published, hungry)
    failed = [e for e in published.log() if e["type"] == "publish.failed"]
    assert failed[-1]["commit"] == hungry
    assert "cell 2: MemoryError" in failed[-1]["error"]  # the kernel's own limit

    slow = await published.push(alice, "alice", "limits", {
        "publish.toml": b'[[dashboards]]\npath = "d.ipynb"\ntimeout = "3s"\n',
        "d.ipynb": notebook(("code", "import time\ntime.sleep(60)")),
    })  # fmt: skip
    await published_commit(published, slow, timeout_s=60)
    failed = [e for e in published.log() if e["type"] == "publish.failed"]
    assert failed[-1]["commit"] == slow
    assert "cell 1: ran longer than 3 s" in failed[-1]["error"]
    runs = [e for e in published.log() if e["type"] == "dashboard.run"]
    assert runs[-1]["seconds"] < 30

    # the kernel gets nothing of the service's environment beyond PATH and the language: not
    # its token (which reads every project), nor anything else the hub handed the service
    nosy = await published.push(alice, "alice", "limits", {
        "publish.toml": b'[[dashboards]]\npath = "d.ipynb"\n',
        "d.ipynb": notebook(("code", "import os\nprint('seen:', sorted(k for k in os.environ"
                                     " if k.startswith(('JUPYTERHUB', 'PUBLISH', 'CHRONOHUB'))))")),
    })  # fmt: skip
    await published_commit(published, nosy, timeout_s=60)
    anonymous = Browser(published.public)
    try:
        page = await anonymous.get("/services/publish/alice/limits/d.html")
        assert page.status == 200, page.text
        assert "seen: []" in page.text, page.text
    finally:
        await anonymous.close()


async def test_a_dashboard_is_run_again_on_its_schedule(published: Deployment) -> None:
    alice = await published.user("alice")
    status, _ = await published.api.call(
        "POST", "/projects", alice, json={"name": "clock", "visibility": "public"}
    )
    assert status == 201
    commit = await published.push(alice, "alice", "clock", {
        "publish.toml": b'[[dashboards]]\npath = "now.ipynb"\nrefresh = "2s"\n',
        "now.ipynb": notebook(("code", "import time\nprint('run at', time.time_ns())")),
    })  # fmt: skip
    await published_commit(published, commit)
    reader = Browser(published.public)
    try:
        first = await reader.get("/services/publish/alice/clock/now.html")
        stamp = re.compile(r"run at (\d+)")
        at_push = stamp.search(first.text)
        assert at_push is not None

        async def refreshed() -> bool:
            page = await reader.get("/services/publish/alice/clock/now.html")
            found = stamp.search(page.text)
            return found is not None and found[1] != at_push[1]

        await wait_for(refreshed, timeout_s=60, every_s=0.5)
        scheduled = [e for e in published.log() if e.get("trigger") == "schedule"]
        assert scheduled
        assert scheduled[0]["ok"] is True
        pinned = await reader.get(f"/services/publish/alice/clock/@{commit}/now.html")
        at_commit = stamp.search(pinned.text)
        assert at_commit is not None
        assert at_commit[1] == at_push[1]  # the commit's URL keeps the push's run
    finally:
        await reader.close()
