"""The publishing service (examples/publish) end to end: real git pushes through the hub, the
event stream, nbconvert and nbclient kernels, HubOAuth sign-in through the proxy."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest

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
    ("code", "rows = open('data/base.txt').read().strip()\nprint(label, rows, [i * i for i in range(n)])"),
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
        return any(e.get("commit") == commit for e in deployment.log() if e["type"] != "dashboard.run")

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
    assert entry["rerendered"] == 2  # intro.ipynb and guide.md; the dashboard ran

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
        assert 'href="intro.html"' in index.text and "secret.py" not in index.text
        assert (await anonymous.get("/services/publish/alice/course/secret.py")).status == 404
        guide = await anonymous.get("/services/publish/alice/course/guide.html")
        assert "<em>text</em>" in guide.text and "publish-toc" in guide.text
        data = await anonymous.get("/services/publish/alice/course/data/base.txt")
        assert data.text == "from-the-commit\n"

        # the dashboard ran in the commit's files, its code hidden
        dash = await anonymous.get("/services/publish/alice/course/dash.html")
        assert "squares from-the-commit [0, 1, 4]" in dash.text
        assert "open(&#39;data/base.txt&#39;)" not in dash.text and "data/base.txt" not in dash.text
        # parameters, papermill's way; cached per parameter set
        runs = len([e for e in published.log() if e["type"] == "dashboard.run"])
        five = await anonymous.get("/services/publish/alice/course/dash.html?n=5&label=cubes")
        assert five.status == 200, five.text
        assert "cubes from-the-commit [0, 1, 4, 9, 16]" in five.text
        again = await anonymous.get("/services/publish/alice/course/dash.html?label=cubes&n=5")
        assert again.text == five.text
        assert len([e for e in published.log() if e["type"] == "dashboard.run"]) == runs + 1
        bad = await anonymous.get("/services/publish/alice/course/dash.html?m=1")
        assert bad.status == 400 and "unknown parameter 'm'" in html.unescape(bad.text)
        bad = await anonymous.get("/services/publish/alice/course/dash.html?n=lots")
        assert bad.status == 400 and "parameter 'n': int expected" in html.unescape(bad.text)

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
        assert (await anonymous.get(f"/services/publish/alice/board/@{bad}/board.html")).status == 404

        # a parameter set that raises: its error and the failing cell, on the page
        failing = await anonymous.get(page + "?fail=true")
        assert failing.status == 500
        text = html.unescape(re.sub(r"<[^>]+>", "", failing.text))
        assert "This dashboard failed" in text and "cell 2: ValueError: asked to fail" in text
        assert "raise ValueError('asked to fail')" in text  # the failing cell, code shown
    finally:
        await anonymous.close()
        await alice_browser.close()
