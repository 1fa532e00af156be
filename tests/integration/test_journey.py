"""A newcomer's first run, in a real browser: the path README's first screen promises.

``chronohub serve`` as ``make run`` starts it (no configuration, a fresh data directory, its
own embedded PostgreSQL; free ports instead of 8000 and 8081, which something else may hold),
then ``chronohub password ada`` while it serves, then Debian's Chromium, driven by Playwright:
the one printed URL → the login page → home → Start my server → JupyterLab through the proxy
→ a notebook prints 6*7 → stop the server from home → sign out. As root, ada's server runs as
her own system account. Each step's screenshot is kept in ``test-artifacts/journey/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import re
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest
from playwright.async_api import Page, async_playwright, expect

pytestmark = [pytest.mark.integration, pytest.mark.collab, pytest.mark.interop]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "journey"
SERVING = re.compile(r"chronohub serving at (http://127\.0\.0\.1:\d+/)hub/")
PASSWORD = "ada's first password"
# As the machine's own probe starts it: no sandbox (root), nothing reaching out to the network.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
LONG_MS = 120_000  # JupyterLab's first load on a busy 2-core machine


def _environment(data_dir: Path) -> dict[str, str]:
    """This process's environment without any hub setting, and the fresh data directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHRONOHUB_", "PG"))}
    env.pop("DATABASE_URL", None)
    return env | {"CHRONOHUB_DATA_DIR": str(data_dir)}


@pytest.fixture
async def public_url(reachable_tmp: Path) -> AsyncIterator[str]:
    """``chronohub serve`` as ``make run`` runs it, and the first admin made by the CLI."""
    chronohub = str(Path(sys.executable).parent / "chronohub")
    env = _environment(reachable_tmp / "state")
    log = open(reachable_tmp / "hub.log", "wb")  # noqa: SIM115 - closed below
    proc = await asyncio.create_subprocess_exec(
        chronohub, "serve", "--port", "0", "--hub-port", "0",
        env=env, cwd=reachable_tmp, stdout=asyncio.subprocess.PIPE, stderr=log,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), 90)).decode()
        served = SERVING.match(first)
        assert served, (first, (reachable_tmp / "hub.log").read_text())
        password = await asyncio.create_subprocess_exec(
            chronohub, "password", "ada",
            env=env, cwd=reachable_tmp, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(password.communicate(PASSWORD.encode() + b"\n"), 90)
        assert password.returncode == 0, out
        assert "ada is an admin: the hub had none" in out.decode()
        yield served[1]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 60)
        finally:
            log.close()
    assert proc.returncode == 0, (reachable_tmp / "hub.log").read_text()[-3000:]


async def _shot(page: Page, step: str) -> None:
    await page.screenshot(path=str(ARTIFACTS / f"{step}.png"), full_page=True)


def _server_account() -> str | None:
    """The account ada's single-user server runs as, if it runs."""
    for proc in psutil.process_iter(["username", "cmdline", "environ"]):
        cmdline = proc.info["cmdline"] or []
        environ = proc.info["environ"] or {}
        if any("jupyterhub-singleuser" in part for part in cmdline) and (
            environ.get("JUPYTERHUB_USER") == "ada"
        ):
            return str(proc.info["username"])
    return None


def _fresh_home() -> None:
    """A newcomer has no notebooks and no JupyterLab workspace yet: empty the home of an
    account an earlier run on this machine left behind (as root, the hub reuses it)."""
    with contextlib.suppress(KeyError):
        home = Path(pwd.getpwnam("jupyter-ada").pw_dir)
        for entry in home.iterdir() if home.is_dir() else []:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


@pytest.mark.timeout(420)
async def test_a_newcomer_reaches_a_running_notebook_and_leaves(public_url: str) -> None:
    if os.geteuid() == 0:
        _fresh_home()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(30_000)
            # The one printed URL leads to the login page.
            await page.goto(public_url)
            await expect(page).to_have_url(re.compile(r"/hub/login"))
            await _shot(page, "01-login")
            await page.fill("input[name=username]", "ada")
            await page.fill("input[name=password]", PASSWORD)
            await page.click("form button[type=submit]")
            await expect(page).to_have_url(re.compile(r"/hub/home"))
            await expect(page.locator("body")).to_contain_text("ada")
            await _shot(page, "02-home")

            # Start my server: JupyterLab, through the proxy, at the same address.
            await page.click("text=Start my server")
            await expect(page).to_have_url(re.compile(r"/user/ada/lab"), timeout=LONG_MS)
            assert page.url.startswith(public_url)
            card = page.locator('.jp-LauncherCard[data-category="Notebook"]').first
            await card.wait_for(timeout=LONG_MS)
            await _shot(page, "03-jupyterlab")
            if os.geteuid() == 0:
                assert _server_account() == "jupyter-ada"
                assert pwd.getpwnam("jupyter-ada").pw_dir == "/home/jupyter-ada"

            # A notebook runs print(6*7) and shows 42.
            await card.click()
            notebook = page.locator(".jp-NotebookPanel:visible")
            editor = notebook.locator(".jp-Cell .cm-content").first
            await editor.wait_for(timeout=LONG_MS)
            # The kernel is connected once the status bar names it and says Idle (before that,
            # JupyterLab runs a cell without sending it anywhere: "[ ]", no output).
            await expect(page.locator(".jp-StatusBar-Widget")).to_contain_text(
                "(ipykernel) | Idle", timeout=LONG_MS
            )
            await editor.click()
            await page.keyboard.type("print(6*7)")
            await page.keyboard.press("Shift+Enter")
            output = notebook.locator(".jp-OutputArea-output").first
            await expect(output).to_have_text("42", timeout=LONG_MS)
            await _shot(page, "04-notebook")

            # Stop the server from home.
            await page.goto(public_url + "hub/home")
            row = page.locator('tr.server[data-name=""]')
            await row.locator("button", has_text="Stop").click()
            await expect(page).to_have_url(re.compile(r"/hub/home"))
            await expect(row.locator(".state")).to_have_text("stopped", timeout=LONG_MS)
            await _shot(page, "05-stopped")
            assert _server_account() is None

            # Sign out, in one click: home is then behind the login page again.
            await page.click("nav button:has-text('Sign out')")
            await expect(page).to_have_url(re.compile(r"/hub/(login|logout)"))
            await _shot(page, "06-signed-out")
            await page.goto(public_url + "hub/home")
            await expect(page).to_have_url(re.compile(r"/hub/login"))
        except BaseException:
            await _shot(page, "failed")  # where it stopped, for whoever reads the failure
            raise
        finally:
            await browser.close()
