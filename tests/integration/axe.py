"""axe-core in a Playwright page: the accessibility check of the browser tests (the notebook,
the audit timeline, the statistics page). axe-core comes from ``frontend/``'s npm packages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import Page

AXE = Path(__file__).resolve().parents[2] / "frontend" / "node_modules" / "axe-core" / "axe.min.js"
NOT_INSTALLED = "frontend/ is not installed: run `make frontend`"


async def violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on ``page`` (evaluated through the devtools
    protocol: the pages' Content-Security-Policy allows no injected script tag)."""
    await page.evaluate(AXE.read_text(encoding="utf-8") + "\n;0")
    result = await page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.slice(0, 3).map(n => [n.target.join(' '),"
        " n.any.map(c => c.message).join('; ')])}))"
    )
    return [v for v in result if v["impact"] in ("serious", "critical")]
