"""The audit timeline in Debian's Chromium (driven by Playwright, as test_journey does): an
event appended through the REST API appears at the top of an open ``/hub/events`` within a
second (the bundle's ``events.js`` on the SSE stream, authenticated by the login cookie),
filters hold live too, the page reads at 320 px, and axe-core finds no serious or critical
accessibility violation. Screenshots go to ``test-artifacts/events/``."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Page, async_playwright, expect

from events import store
from hub.audit import history
from tests.integration import axe
from tests.integration.api_fixtures import Api
from tests.integration.browser import PASSWORD, running_hub, set_password

pytestmark = [pytest.mark.integration, pytest.mark.interop]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "events"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture
async def hub(event_store: store.EventStore, tmp_path: Path) -> AsyncIterator[tuple[Api, str]]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    async with running_hub(event_store, data_dir=tmp_path) as running:
        await set_password(running[0], "admin")
        yield running


async def _sign_in(page: Page, base: str) -> None:
    await page.goto(f"{base}/hub/events")
    await expect(page).to_have_url(f"{base}/hub/login?next=/hub/events")
    await page.get_by_label("Username").fill("admin")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Audit timeline")


@pytest.mark.timeout(120)
async def test_an_event_appended_through_the_api_appears_at_the_top_within_a_second(
    hub: tuple[Api, str],
) -> None:
    api, base = hub
    assert axe.AXE.is_file(), axe.NOT_INSTALLED
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await _sign_in(page, base)
            switch = page.get_by_role("switch", name="Live: new events appear at the top")
            await expect(switch).to_be_visible()
            await expect(switch).to_be_checked()
            await expect(page.locator("#live-status")).to_have_text("following")

            top = page.locator("#timeline > li.event").first
            status, _ = await api.call("POST", "/users/newcomer")
            assert status == 201
            await expect(top.get_by_role("heading", level=3)).to_have_text(
                "user.created", timeout=1000
            )
            await expect(top.locator("pre.data")).to_contain_text('"name": "newcomer"')
            await expect(top.get_by_role("link", name="everything about newcomer")).to_be_visible()
            await top.get_by_text("Data").click()  # the event opens to its data
            await expect(top.locator("pre.data")).to_be_visible()
            await page.screenshot(path=str(ARTIFACTS / "timeline.png"), full_page=True)
            found = await axe.violations(page)
            assert found == [], json.dumps(found, indent=1)

            # Paused, nothing comes; back on, what happened meanwhile arrives (no gap).
            await switch.uncheck()
            await expect(page.locator("#live-status")).to_have_text("paused")
            await api.call("POST", "/users/while-paused")
            await switch.check()
            await expect(top.locator("pre.data")).to_contain_text('"while-paused"', timeout=2000)

            # The hub drops the stream (as it drops one that falls behind): the browser
            # reconnects with Last-Event-ID and gets what was appended meanwhile.
            followers = list(api.client.app[history.FEED].followers)
            assert len(followers) == 1
            followers[0].drop("dropped by the test", abort=True)
            await api.call("POST", "/users/after-the-drop")
            await expect(top.locator("pre.data")).to_contain_text(
                '"after-the-drop"', timeout=10_000
            )
            assert await page.locator("li.event").count() == len(
                set(await page.locator("li.event").evaluate_all("rows => rows.map(r => r.id)"))
            )

            # Filters hold live: a page of group events gets a group, not a user.
            await page.get_by_label("Type or kind").fill("group.")
            await page.get_by_role("button", name="Show").click()
            await expect(page.locator("#live-status")).to_have_text("following")
            await api.call("POST", "/users/not-shown")
            await api.call("POST", "/groups/shown")
            await expect(top.locator("pre.data")).to_contain_text('"name": "shown"', timeout=1000)
            await expect(page.locator("#timeline")).not_to_contain_text("not-shown")

            # 320 px wide: no sideways scrolling.
            await page.set_viewport_size({"width": 320, "height": 800})
            await page.goto(f"{base}/hub/events")
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            wide = await page.evaluate(
                "[...document.querySelectorAll('body *')].filter(e =>"
                " e.getBoundingClientRect().right > document.documentElement.clientWidth)"
                ".map(e => e.tagName + '.' + e.className + '#' + e.id + ' '"
                " + Math.round(e.getBoundingClientRect().right)).slice(0, 30)"
            )
            assert overflow <= 0, (overflow, wide)
            await page.screenshot(path=str(ARTIFACTS / "timeline-320.png"), full_page=True)

            # The hub at the moment of the first event shown.
            await page.set_viewport_size({"width": 1280, "height": 900})
            await top.get_by_role("link", name="The hub at this moment").click()
            await expect(page.get_by_role("heading", level=1)).to_contain_text("The hub at")
            await expect(page.locator("#users")).to_contain_text("newcomer")
            await page.screenshot(path=str(ARTIFACTS / "moment.png"), full_page=True)
            assert errors == []
        finally:
            await browser.close()
