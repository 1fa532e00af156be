"""The projects pages in a browser: the list with its create form, a project's page, its
directories and files; and content pushed with git that tries to run script in the hub's
origin (a notebook with ``<script>``, ``<img onerror>``, a JavaScript output, an HTML output
with script, an SVG with script, and markdown with script), checked in the HTML and in
Chromium: the flag the injected script would set is never set."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright

from tests.integration.browser import PASSWORD, Browser, set_password
from tests.integration.git_client import Git, with_token
from tests.integration.projects_fixtures import ProjectsHub
from tests.integration.test_journey import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.integration, pytest.mark.interop]

PWN = "window.__pwned = 1"
EVIL_NOTEBOOK = json.dumps(
    {
        "cells": [
            {
                "id": "md",
                "cell_type": "markdown",
                "metadata": {},
                "source": f"# Evil\n<script>{PWN}</script>\n"
                f'<img src="x" onerror="{PWN}">\n[click](javascript:{PWN})',
            },
            {
                "id": "code",
                "cell_type": "code",
                "metadata": {},
                "execution_count": 1,
                "source": "1 + 1",
                "outputs": [
                    {
                        "output_type": "display_data",
                        "metadata": {},
                        "data": {"application/javascript": PWN, "text/plain": "js"},
                    },
                    {
                        "output_type": "display_data",
                        "metadata": {},
                        "data": {
                            "text/html": f"<b>bold</b><script>{PWN}</script>"
                            f'<img src="x" onerror="{PWN}"><a href="javascript:{PWN}">a</a>'
                            f'<iframe srcdoc="<script>{PWN}</script>"></iframe>'
                        },
                    },
                    {
                        "output_type": "display_data",
                        "metadata": {},
                        "data": {
                            "image/svg+xml": '<svg xmlns="http://www.w3.org/2000/svg">'
                            f"<script>{PWN}</script></svg>"
                        },
                    },
                    {
                        "output_type": "execute_result",
                        "metadata": {},
                        "execution_count": 1,
                        "data": {"text/plain": "2"},
                    },
                ],
            },
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
).encode()
FILES = {
    "evil.ipynb": EVIL_NOTEBOOK,
    "README.md": f"# Read me\n\n<script>{PWN}</script>\n\n<img src=x onerror='{PWN}'>\n".encode(),
    "docs/notes.md": f'<a href="javascript:{PWN}">notes</a> <svg onload="{PWN}"></svg>\n'.encode(),
    "page.html": f"<script>{PWN}</script>".encode(),
    "src/main.py": b"print('hello')\nprint('world')\n",
}
PAGES = [
    "/hub/projects",
    "/hub/projects/alice/evil",
    "/hub/projects/alice/evil/tree/main/docs",
    "/hub/projects/alice/evil/blob/main/evil.ipynb",
    "/hub/projects/alice/evil/blob/main/README.md",
    "/hub/projects/alice/evil/blob/main/docs/notes.md",
    "/hub/projects/alice/evil/blob/main/page.html",
    "/hub/projects/alice/evil/blob/main/src/main.py",
]
ACTIVE = [
    re.compile(r"<script", re.IGNORECASE),
    re.compile(r"<[^>]*\son\w+\s*=", re.IGNORECASE),
    re.compile(r"""(href|src)\s*=\s*["']?\s*javascript:""", re.IGNORECASE),
    re.compile(r"<(iframe|svg|object|embed)\b", re.IGNORECASE),
]


@pytest.fixture
def git(tmp_path: Path) -> Git:
    return Git(tmp_path / "home")


async def _evil_project(hub: ProjectsHub, git: Git, tmp_path: Path) -> str:
    await set_password(hub, "alice")
    alice = await hub.user_token("alice")
    project = await hub.project(alice, "evil", description="tries things")
    work = tmp_path / "work"
    await git.new_repo(work, FILES)
    await git.ok("push", "-q", with_token(project["clone_url"], alice), "main", cwd=work)
    return alice


async def test_pages_show_projects_and_their_files(
    projects_hub: ProjectsHub, git: Git, tmp_path: Path
) -> None:
    hub = projects_hub
    await _evil_project(hub, git, tmp_path)
    browser = Browser(hub.base_url)
    try:
        signed_out = await browser.get("/hub/projects")
        assert (signed_out.location or "").startswith("/hub/login")
        assert (await browser.login("alice")).status == 302
        home = await browser.get("/hub/home")
        assert 'href="/hub/projects"' in home.text
        listing = await browser.get("/hub/projects")
        assert listing.status == 200
        assert 'data-section="mine" data-name="alice/evil"' in listing.text
        page = await browser.get("/hub/projects/alice/evil")
        assert page.status == 200, page.text
        assert f"git clone {hub.base_url}/hub/git/alice/evil.git" in page.text
        assert 'data-path="evil.ipynb"' in page.text
        assert 'id="readme"' in page.text
        assert "<h1>Read me</h1>" in page.text
        assert 'class="commit"' in page.text
        source = await browser.get("/hub/projects/alice/evil/blob/main/src/main.py")
        assert 'id="L2"' in source.text
        assert "print(&#39;world&#39;)" in source.text
        notebook = await browser.get("/hub/projects/alice/evil/blob/main/evil.ipynb")
        assert "<b>bold</b>" in notebook.text
        assert "data:image/svg+xml;base64," in notebook.text
        missing = await browser.get("/hub/projects/alice/evil/blob/main/nope.txt")
        assert missing.status == 404
        assert "nope.txt" in missing.text
        assert (await browser.get("/hub/projects/alice/none")).status == 404

        form = await browser.get("/hub/projects")
        created = await browser.post(
            "/hub/projects",
            data={"_xsrf": form.hidden("_xsrf"), "name": "fresh", "visibility": "hub"},
        )
        assert created.status == 302, created.text
        assert created.location == "/hub/projects/alice/fresh"
        fresh = await browser.get("/hub/projects/alice/fresh")
        assert 'id="empty-project"' in fresh.text
        bad = await browser.post(
            "/hub/projects", data={"_xsrf": form.hidden("_xsrf"), "name": "no spaces"}
        )
        assert bad.status == 400
        assert "name" in bad.text
    finally:
        await browser.close()

    # someone who may not read the project gets 404 pages
    await set_password(hub, "carol")
    other = Browser(hub.base_url)
    try:
        await other.login("carol")
        for path in PAGES[1:]:
            assert (await other.get(path)).status == 404, path
    finally:
        await other.close()


async def test_pushed_script_never_runs_in_the_hubs_origin(
    projects_hub: ProjectsHub, git: Git, tmp_path: Path
) -> None:
    hub = projects_hub
    await _evil_project(hub, git, tmp_path)
    browser = Browser(hub.base_url)
    try:
        await browser.login("alice")
        for path in PAGES:
            page = await browser.get(path)
            assert page.status == 200, (path, page.text)
            csp = page.response.headers["Content-Security-Policy"]
            assert "default-src 'none'" in csp
            assert "script-src" not in csp
            for pattern in ACTIVE:
                found = pattern.search(page.text)
                assert found is None, (path, found.group(0) if found else None)
    finally:
        await browser.close()

    if not Path(CHROMIUM).exists():
        pytest.skip("no Chromium at /usr/bin/chromium for the in-browser check")
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await chromium.new_page()
            page.set_default_timeout(30_000)
            await page.goto(f"{hub.base_url}/hub/login")
            await page.fill("input[name=username]", "alice")
            await page.fill("input[name=password]", PASSWORD)
            await page.click("form button[type=submit]")
            await page.wait_for_url(re.compile(r"/hub/home"))
            for path in PAGES:
                await page.goto(f"{hub.base_url}{path}")
                await page.wait_for_load_state("load")
                pwned: Any = await page.evaluate("() => window.__pwned")
                assert pwned is None, path
                # what a user may click in the rendered content leads nowhere dangerous
                hrefs = await page.eval_on_selector_all(
                    ".user-content a", "links => links.map(a => a.getAttribute('href'))"
                )
                assert not [h for h in hrefs if h and h.strip().lower().startswith("javascript")]
        finally:
            await chromium.close()
