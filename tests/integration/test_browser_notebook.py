"""The collaborative notebook page (``/hub/sessions/{id}``, frontend/) in Debian's Chromium.

Two browser contexts signed in as two people open one shared execution session: each types in
a cell and sees the other's text and cursor; one runs a cell and both see its output and
execution count (a real ipykernel); one goes offline, edits, comes back, and nothing is lost.
A reader sees the notebook but cannot type or run. Hostile HTML and SVG outputs run no script,
and an SVG's global style leaves the page as it is.
axe-core finds no serious or critical accessibility violation. Screenshots are kept in
``test-artifacts/notebook/``.

The page's bundle is built by the Makefile (``make frontend``; ``make test`` depends on it).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from collab import notebook
from events import store
from hub.web import assets
from tests.helpers import wait_for
from tests.integration import axe
from tests.integration import browser as form_browser
from tests.integration.collab_fixtures import COLLAB_CONFIG, CollabHub, serving
from tests.integration.test_journey import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.integration, pytest.mark.collab, pytest.mark.interop]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "notebook"
SESSIONS = "/collab/sessions"
# bob edits alice's rooms, carol watches them
ROLES = [
    *COLLAB_CONFIG["roles"],
    {"name": "alice-writers", "scopes": ["write:collab!user=alice"], "users": ["bob"]},
    {"name": "alice-readers", "scopes": ["read:collab!user=alice"], "users": ["carol"]},
]
HOSTILE_HTML = (
    "<p id='hostile-html'>hostile</p><script>window.pwned = 'script'</script>"
    "<img src='data:,' onerror=\"window.pwned = 'onerror'\">"
    "<a href=\"javascript:window.pwned='link'\">link</a>"
)
HOSTILE_SVG = (
    "<svg xmlns='http://www.w3.org/2000/svg' width='20' height='20' id='hostile-svg'>"
    "<script>window.pwned = 'svg'</script>"
    "<style>body * { visibility: hidden !important }</style>"
    "<rect width='20' height='20' onload=\"window.pwned='rect'\""
    " style='fill: red'/>"
    "</svg>"
)


def code(cell_id: str, source: str, outputs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "id": cell_id,
        "cell_type": "code",
        "source": source,
        "metadata": {},
        "outputs": outputs or [],
        "execution_count": None,
    }


def a_notebook(*cells: dict[str, Any]) -> dict[str, Any]:
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": list(cells)}


PNG_1PX = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5E"
    "rkJggg=="
)
HOSTILE_NOTEBOOK = {
    "nbformat": 4,
    "nbformat_minor": 5,
    "metadata": {},
    "cells": [
        {"id": "md", "cell_type": "markdown", "metadata": {},
         "source": "# Notes\n*shared* <img src='data:,' onerror=\"window.pwned='markdown'\">"},
        code("html", "display(HTML(...))",
             [{"output_type": "display_data", "metadata": {},
               "data": {"text/html": HOSTILE_HTML, "text/plain": "<HTML>"}}]),
        code("svg", "display(SVG(...))",
             [{"output_type": "display_data", "metadata": {},
               "data": {"image/svg+xml": HOSTILE_SVG, "text/plain": "<SVG>"}}]),
        code("rest", "many outputs", [
            {"output_type": "stream", "name": "stdout", "text": "printed\n"},
            {"output_type": "error", "ename": "ValueError", "evalue": "bad",
             "traceback": ["\x1b[31mValueError\x1b[0m: bad"]},
            {"output_type": "display_data", "metadata": {},
             "data": {"image/png": PNG_1PX, "text/plain": "a dot"}},
            {"output_type": "execute_result", "metadata": {}, "execution_count": 3,
             "data": {"application/json": {"a": 1}, "text/plain": "{'a': 1}"}},
        ]),
    ],
}  # fmt: skip


def _need_browser() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Debian's Chromium is not installed at {CHROMIUM}: apt-get install chromium")
    if assets.url("notebook.js") is None:
        pytest.fail(assets.BUILD_HINT)


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@asynccontextmanager
async def hub_with_session(
    event_store: store.EventStore, db_url: str, nb: dict[str, Any]
) -> AsyncIterator[tuple[CollabHub, str, str]]:
    """A hub serving rooms, alice, bob and carol with passwords, and alice's session on ``nb``:
    the hub, its http:// base and the session's id."""
    async with serving(event_store, db_url, roles=ROLES) as hub:
        for name in ("alice", "bob", "carol"):
            await form_browser.set_password(hub.api, name)
        status, created = await hub.api.call(
            "POST", SESSIONS, await hub.token("alice"), json={"notebook": nb}
        )
        assert status == 201, created
        yield hub, hub.url.replace("ws://", "http://"), created["id"]


async def signed_in(
    chrome: Browser, base: str, name: str, session_id: str, width: int = 1100
) -> tuple[BrowserContext, Page]:
    """A new context signed in as ``name`` through the login form, on the session's page."""
    context = await chrome.new_context(viewport={"width": width, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    target = f"/hub/sessions/{session_id}"
    await page.goto(f"{base}/hub/login?next={target}")
    await page.fill("input[name=username]", name)
    await page.fill("input[name=password]", form_browser.PASSWORD)
    await page.click("form button[type=submit]")
    await expect(page).to_have_url(re.compile(re.escape(target) + "$"))
    await expect(page.locator("body")).to_have_attribute("data-synced", "true")
    assert not errors, errors
    return context, page


def cell(page: Page, cell_id: str) -> Any:
    return page.locator(f'section.cell[data-cell-id="{cell_id}"]')


async def type_into(page: Page, cell_id: str, text: str) -> None:
    editor = cell(page, cell_id).locator(".cm-content")
    await editor.click()
    await page.keyboard.press("Control+End")
    await page.keyboard.type(text)


# What the editor shows, without the remote carets' name labels (widgets inside its lines).
_SHOWN = """(id) => {
  const content = document.querySelector(`section.cell[data-cell-id="${id}"] .cm-content`)
  if (!content) return null
  const copy = content.cloneNode(true)
  copy.querySelectorAll('.cm-ySelectionCaret').forEach(caret => caret.remove())
  return [...copy.querySelectorAll('.cm-line')].map(line => line.textContent).join('\\n')
}"""


async def shows(page: Page, cell_id: str, text: str, timeout_s: float = 10) -> None:
    """Wait until the cell's editor shows ``text`` (its lines joined by newlines)."""
    last: list[Any] = [None]

    async def check() -> bool:
        last[0] = await page.evaluate(_SHOWN, cell_id)
        return bool(last[0] == text)

    try:
        await wait_for(check, timeout_s=timeout_s, every_s=0.05)
    except AssertionError:
        raise AssertionError(f"cell {cell_id} shows {last[0]!r}, not {text!r}") from None


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.mark.timeout(300)
async def test_two_people_edit_see_each_other_run_and_survive_going_offline(
    event_store: store.EventStore, db_url: str
) -> None:
    _need_browser()
    nb = a_notebook(code("c0", ""), code("c1", ""))
    async with (
        hub_with_session(event_store, db_url, nb) as (_hub, base, session_id),
        chromium() as chrome,
    ):
        _actx, alice = await signed_in(chrome, base, "alice", session_id)
        bctx, bob = await signed_in(chrome, base, "bob", session_id)
        try:
            # who is here: the names as signed in
            for page in (alice, bob):
                await expect(page.locator("#people li[data-name=alice]")).to_be_visible()
                await expect(page.locator("#people li[data-name=bob]")).to_be_visible()

            # each types in a cell and sees the other's text and cursor
            await type_into(alice, "c0", "x = 6 * 7")
            await type_into(bob, "c1", "print('from bob')")
            await shows(bob, "c0", "x = 6 * 7")
            await shows(alice, "c1", "print('from bob')")
            await expect(cell(alice, "c1").locator(".cm-ySelectionInfo")).to_have_text("bob")
            await expect(cell(alice, "c1").locator(".cm-ySelectionCaret")).to_have_count(1)
            await type_into(alice, "c0", "")  # alice's cursor back in c0, bob sees it there
            await expect(cell(bob, "c0").locator(".cm-ySelectionInfo")).to_have_text("alice")
            await shot(alice, "01-two-people-typing")
            # the arrow keys leave a cell past its last line for the next one
            await cell(alice, "c0").locator(".cm-content").click()
            await alice.keyboard.press("Control+End")
            await alice.keyboard.press("ArrowDown")
            await expect(cell(alice, "c1").locator(".cm-content")).to_be_focused()
            await alice.keyboard.press("ArrowUp")
            await expect(cell(alice, "c0").locator(".cm-content")).to_be_focused()

            # alice runs c0 and then c1 with Shift-Enter: both see the outputs and the counts
            await type_into(alice, "c0", "\nprint(x)")
            await cell(alice, "c0").locator(".cm-content").click()
            await alice.keyboard.press("Shift+Enter")
            for page in (alice, bob):
                outputs = cell(page, "c0").locator(".cell-outputs")
                await expect(outputs).to_have_text("42", timeout=60_000)
                await expect(cell(page, "c0").locator(".prompt")).to_have_text("[1]")
            # Shift-Enter moved alice to c1; run it from there
            await alice.keyboard.press("Shift+Enter")
            for page in (alice, bob):
                outputs = cell(page, "c1").locator(".cell-outputs")
                await expect(outputs).to_have_text("from bob", timeout=30_000)
                await expect(cell(page, "c1").locator(".prompt")).to_have_text("[2]")
                await expect(page.locator("#kernel")).to_have_text("idle")
            await shot(bob, "02-outputs-seen-by-bob")

            # bob goes offline, edits; alice edits meanwhile; bob comes back: nothing lost
            await bctx.set_offline(True)
            await expect(bob.locator("#connection")).not_to_have_text("connected", timeout=40_000)
            await type_into(bob, "c1", "  # offline edit")
            await type_into(alice, "c0", "  # online edit")
            await shot(bob, "03-bob-offline")
            await bctx.set_offline(False)
            await expect(bob.locator("#connection")).to_have_text("connected", timeout=40_000)
            for page in (alice, bob):
                await shows(page, "c1", "print('from bob')  # offline edit")
                await shows(page, "c0", "x = 6 * 7\nprint(x)  # online edit")

            # a new cell at the end, a long run, Interrupt (the sessions API, XSRF token)
            await alice.click("#add-cell")
            last = alice.locator("section.cell").last
            await expect(last.locator(".cm-content")).to_be_focused()
            await alice.keyboard.type("import time; time.sleep(120)")
            await alice.keyboard.press("Control+Enter")
            await expect(bob.locator("#kernel")).to_have_text("busy", timeout=30_000)
            await alice.click("#interrupt")
            await expect(alice.locator("#status")).to_have_text("Interrupted.")
            for page in (alice, bob):
                await expect(
                    page.locator("section.cell").last.locator(".output-error")
                ).to_contain_text("KeyboardInterrupt", timeout=30_000)
                await expect(page.locator("#kernel")).to_have_text("idle")
            # bob moves that cell to the top, alice sees it there; then deletes it
            count = await alice.locator("section.cell").count()
            for _ in range(count - 1):
                sleeper = bob.locator("section.cell", has_text="time.sleep(120)")
                await sleeper.locator("button.up").click()
            await expect(
                alice.locator("section.cell").first.locator(".cm-content")
            ).to_contain_text("time.sleep(120)")
            await alice.locator("section.cell").first.locator("button.delete").click()
            await expect(bob.locator("section.cell")).to_have_count(count - 1)
            await expect(bob.locator("section.cell").first).to_have_attribute("data-cell-id", "c0")
            # Restart
            await alice.click("#restart")
            await expect(alice.locator("#status")).to_have_text(
                "The kernel restarted.", timeout=60_000
            )
        except BaseException:
            await shot(alice, "failed-alice")
            await shot(bob, "failed-bob")
            raise


@pytest.mark.timeout(240)
async def test_a_reader_watches_hostile_outputs_run_no_script_and_axe_finds_nothing_serious(
    event_store: store.EventStore, db_url: str
) -> None:
    _need_browser()
    assert axe.AXE.is_file(), axe.NOT_INSTALLED
    async with (
        hub_with_session(event_store, db_url, HOSTILE_NOTEBOOK) as (hub, base, session_id),
        chromium() as chrome,
    ):
        _actx, alice = await signed_in(chrome, base, "alice", session_id)
        _cctx, carol = await signed_in(chrome, base, "carol", session_id, width=320)
        try:
            await carol.emulate_media(color_scheme="dark")
            for page in (alice, carol):
                # every output drawn, sanitised
                await expect(page.locator("#hostile-html")).to_have_text("hostile")
                # the SVG is an image: its scripts and its global <style> cannot touch the page
                svg = page.locator('[data-mime="image/svg+xml"] img[src^="data:image/svg+xml"]')
                await expect(svg).to_have_attribute("alt", "<SVG>")
                await expect(page.locator('[data-mime="image/svg+xml"] svg')).to_have_count(0)
                await expect(page.locator("#hostile-html")).to_be_visible()
                await expect(cell(page, "rest").locator(".output-stream")).to_be_visible()
                rest = cell(page, "rest").locator(".cell-outputs")
                await expect(rest.locator(".output-stream")).to_have_text("printed")
                await expect(rest.locator(".output-error .ansi-red-fg")).to_have_text("ValueError")
                await expect(rest.locator('img[src^="data:image/png"]')).to_have_attribute(
                    "alt", "a dot"
                )
                await expect(rest.locator('[data-mime="application/json"]')).to_contain_text(
                    '"a": 1'
                )
                await expect(cell(page, "md").locator(".markdown-rendered h1")).to_have_text(
                    "Notes"
                )
                # no script ran, none is left in the document, no handler, no javascript: link
                assert await page.evaluate("window.pwned") is None
                found = await page.evaluate(
                    "() => [...document.querySelectorAll('#cells *')].filter(el =>"
                    " el.tagName.toLowerCase() === 'script' ||"
                    " [...el.attributes].some(a => a.name.startsWith('on') ||"
                    " /^\\s*javascript:/i.test(a.value))).map(el => el.outerHTML)"
                )
                assert found == []
            await shot(alice, "04-outputs-alice")

            # alice edits the markdown cell (Enter on its rendering), Shift-Enter renders it
            # again, and the reader sees the new rendering
            await cell(alice, "md").locator(".markdown-rendered").focus()
            await alice.keyboard.press("Enter")
            md_editor = cell(alice, "md").locator(".cm-content")
            await expect(md_editor).to_be_focused()
            await alice.keyboard.press("Control+End")
            await alice.keyboard.type("\n\n## Added together")
            await alice.keyboard.press("Shift+Enter")
            await expect(cell(alice, "md").locator(".markdown-rendered h2")).to_have_text(
                "Added together"
            )
            await expect(cell(carol, "md").locator(".markdown-rendered h2")).to_have_text(
                "Added together"
            )

            # the reader: no run or edit controls, editors not editable, typing changes nothing
            await expect(carol.locator("#read-only")).to_be_visible()
            await expect(carol.locator("#run-all")).to_have_count(0)
            await expect(carol.locator(".cell-tools")).to_have_count(0)
            editor = cell(carol, "html").locator(".cm-content")
            await expect(editor).to_have_attribute("contenteditable", "false")
            await editor.click()
            await carol.keyboard.type("import os")
            await shows(carol, "html", "display(HTML(...))")
            # and the room's document has not changed (a write would have reached it first)
            assert hub.sessions is not None
            bound = hub.sessions.get(uuid.UUID(session_id))
            assert bound is not None
            assert notebook.source_of(notebook.find_cell(bound.session.doc, "html")) == (
                "display(HTML(...))"
            )
            # readable at 320 px: nothing wider than the screen but the cells' own scrolling
            width = await carol.evaluate("document.documentElement.scrollWidth")
            assert width <= 320, width
            await shot(carol, "05-reader-320px-dark")

            for page in (alice, carol):
                violations = await axe.violations(page)
                assert violations == [], json.dumps(violations, indent=1)
        except BaseException:
            await shot(alice, "failed-alice")
            await shot(carol, "failed-carol")
            raise
