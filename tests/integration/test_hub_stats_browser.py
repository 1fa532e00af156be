"""The hub-stats page in Debian's Chromium, run as the README says (a managed service of
``chronohub serve``, behind the proxy): its chart is drawn by uPlot from the hub's own bundle
(``stats.js``, linked under the hub's address on the same origin) with the figures the service
counted from the hub's events; without script the SVG chart stays; axe-core finds no serious
or critical accessibility violation. Screenshots go to ``test-artifacts/stats/``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from uuid import uuid4

import aiohttp
import pytest
from playwright.async_api import async_playwright, expect

from events import store
from tests.helpers import wait_for
from tests.integration import axe
from tests.integration.serve_process import chronohub_serve
from tests.integration.test_hub_stats_example import CONFIG, EXAMPLE, spawn
from tests.integration.test_journey import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.integration, pytest.mark.interop]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "stats"
SERIES = ["spawns", "logins", "pushes", "collab_joins"]  # the chart's order (hub_stats.SERIES)


async def counted(base: str, spawns: int) -> bool:
    """Whether the service (started by the hub, so perhaps not yet up) counted ``spawns``."""
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(base + "stats.json?period=1h") as response,
        ):
            return response.status == 200 and (await response.json())["spawns"] == spawns
    except aiohttp.ClientError:
        return False


@pytest.mark.timeout(180)
async def test_the_stats_page_draws_the_hubs_figures_with_uplot_from_the_hubs_bundle(
    event_store: store.EventStore, db_url: str, tmp_path: Path
) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    assert axe.AXE.is_file(), axe.NOT_INSTALLED
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    config = (
        "[[services]]\n"
        'name = "hub-stats"\n'
        'url = "http://127.0.0.1:0"\n'
        f"command = [{json.dumps(sys.executable)}, {json.dumps(str(EXAMPLE))}]\n"
        "\n"
        "[[roles]]\n"
        'name = "hub-stats"\n'
        f"scopes = {json.dumps(CONFIG['roles'][0]['scopes'])}\n"
        'services = ["hub-stats"]\n'
    )
    async with chronohub_serve(db_url, tmp_path, config) as public:
        base = public + "services/hub-stats/"
        await spawn(event_store, "ada", uuid4(), "ready")
        bob = uuid4()
        await spawn(event_store, "bob", bob, "failed")
        await spawn(event_store, "bob", bob, "ready")
        await wait_for(lambda: counted(base, spawns=3), timeout_s=60, every_s=0.2)

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1024, "height": 800})
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await page.goto(base + "?period=1h")
                script = await page.locator("script[type=module]").get_attribute("src")
                assert script is not None
                assert script.startswith("/hub/static/app/stats-"), script  # the hub's bundle
                await page.wait_for_function("window.hubStatsChart !== undefined")
                chart = page.locator("#chart .uplot canvas")
                await expect(chart).to_be_visible()
                await expect(page.locator("#chart-svg")).to_have_count(0)
                await expect(page.locator("#chart .u-legend")).to_contain_text("spawns")

                # the chart's points are the service's figures, as the page was given them
                drawn = await page.evaluate("window.hubStatsChart.data.map(c => Array.from(c))")
                given = json.loads(await page.locator("#chart-data").text_content() or "{}")
                assert drawn[1:] == [given["series"][kind] for kind in SERIES]
                assert [t * 1000 for t in drawn[0]] == [
                    await page.evaluate("iso => Date.parse(iso)", iso) for iso in given["buckets"]
                ]
                assert sum(drawn[1]) == 3  # three spawns counted from the hub's events
                assert sum(sum(column) for column in drawn[2:]) == 0
                painted = await page.evaluate(
                    """() => {
                      const c = document.querySelector('#chart .uplot canvas')
                      const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data
                      let n = 0
                      for (let i = 3; i < px.length; i += 4) if (px[i] !== 0) n++
                      return n
                    }"""
                )
                assert painted > 0, "the chart's canvas is blank"
                await page.screenshot(path=str(ARTIFACTS / "stats.png"), full_page=True)
                found = await axe.violations(page)
                assert found == [], json.dumps(found, indent=1)
                assert errors == []

                # Without script: the SVG chart, drawn by the service.
                plain = await browser.new_page(java_script_enabled=False)
                await plain.goto(base + "?period=1h")
                await expect(plain.locator("#chart-svg")).to_be_visible()
                assert await plain.locator("#chart-svg rect").count() > 0
                await plain.screenshot(path=str(ARTIFACTS / "stats-no-script.png"))
            finally:
                await browser.close()
