"""The publishing service (examples/publish) end to end: real git pushes through the hub, the
event stream, nbconvert and nbclient kernels, HubOAuth sign-in through the proxy."""

from __future__ import annotations

import html
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
