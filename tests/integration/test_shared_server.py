"""A shared server reached by its other users, each with their own login, in a real browser.

The real ``jupyterhub-singleuser`` runs alice's server behind the built-in proxy; bob and
carol use Debian's Chromium (Playwright). Before any share, the hub refuses them. Alice (who
holds ``shares!user``, as JupyterHub's docs tell admins to grant) shares her server with bob
by name and gives carol a share code, which carol accepts on the hub's page. Each then signs in
through the server's own ``HubOAuth``, which admits them because their ``/hub/api/user`` shows
``access:servers!server=alice/``: JupyterLab loads for bob, and the server's API answers them
through its cookie. Once alice revokes a share, the server refuses that user at the next
whoami it makes: within a second here (its ``HubOAuth`` cache is set to 1 s; JupyterHub's
default keeps a whoami 5 minutes, and 0 means forever).
"""

from __future__ import annotations

import os
import re

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.helpers import wait_for
from tests.integration.spawn_fixtures import CONFIG, StartHub
from tests.integration.test_journey import CHROMIUM, CHROMIUM_ARGS, LONG_MS
from tests.integration.test_singleuser import SINGLEUSER

pytestmark = [pytest.mark.integration, pytest.mark.interop]

PASSWORD = "a shared server's password"
SHARER = {"name": "sharer", "scopes": ["shares!user", "read:users:name"], "users": ["alice"]}


async def _sign_in(browser: Browser, base: str, name: str) -> Page:
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(30_000)
    await page.goto(base + "/hub/login")
    await page.fill("input[name=username]", name)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("form button[type=submit]")
    await expect(page).to_have_url(re.compile(r"/hub/home"))
    return page


async def _status(page: Page, base: str) -> int:
    """What alice's server answers this browser's ``api/status`` (cookies, no token)."""
    response = await page.request.get(base + "/user/alice/api/status", max_redirects=0)
    return response.status


async def _refused(page: Page, base: str) -> None:
    """Wait (at most 10 s) for the server to refuse this browser, once its whoami is stale."""

    async def refused() -> bool:
        return await _status(page, base) == 403

    await wait_for(refused, timeout_s=10, every_s=0.2)


async def _through_oauth(page: Page, base: str, path: str) -> None:
    """Open ``path`` of alice's server: the server sends the browser to the hub, which asks
    to authorize the server (not the user's own) and sends it back."""
    await page.goto(base + path)
    await expect(page.locator("h1")).to_have_text("Authorize access")
    await page.click("button:has-text('Authorize')")


@pytest.mark.timeout(600)
async def test_shared_users_reach_the_server_with_their_own_login(spawn_hub: StartHub) -> None:
    args = ["--allow-root"] if os.geteuid() == 0 else []
    hub = await spawn_hub(
        command=[SINGLEUSER],
        spawner_args=[*args, "--HubOAuth.cache_max_age=1"],
        start_timeout=90,
        slow_spawn_timeout=90,
        roles=[*CONFIG["roles"], SHARER],
    )
    alice = await hub.user("alice")
    for name in ("alice", "bob", "carol"):
        await hub.user(name)
        status, reply = await hub.call(
            "PUT", f"/users/{name}/password", json={"password": PASSWORD}
        )
        assert status == 204, reply
    status, reply = await hub.call("POST", "/users/alice/server", token=alice)
    assert status == 201, reply
    base = hub.proxy_url

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            bob = await _sign_in(browser, base, "bob")
            # Not shared yet: the hub will not authorize bob for alice's server.
            await bob.goto(base + "/user/alice/lab")
            await expect(bob.locator("body")).to_contain_text("do not have permission")
            assert await _status(bob, base) in (302, 403)

            status, share = await hub.call(
                "POST", "/shares/alice/", token=alice, json={"user": "bob"}
            )
            assert status == 200, share
            assert share["scopes"] == ["access:servers!server=alice/"]
            await _through_oauth(bob, base, "/user/alice/lab")
            await expect(bob).to_have_url(re.compile(r"/user/alice/lab"), timeout=LONG_MS)
            launcher = bob.locator(".jp-LauncherCard").first
            await launcher.wait_for(timeout=LONG_MS)
            assert await _status(bob, base) == 200

            # carol: a share code, accepted on the hub's page, then the server
            status, issued = await hub.call(
                "POST", "/share-codes/alice/", token=alice, json={"expires_in": 600}
            )
            assert status == 200, issued
            carol = await _sign_in(browser, base, "carol")
            await carol.goto(base + issued["accept_url"])
            await expect(carol.locator("#share-scopes")).to_contain_text(
                "access:servers!server=alice/"
            )
            await carol.click("button:has-text('Accept')")
            # to the server, which sends carol through the hub's OAuth
            await expect(carol.locator("h1")).to_have_text("Authorize access", timeout=LONG_MS)
            await carol.click("button:has-text('Authorize')")
            await expect(carol).to_have_url(re.compile(r"/user/alice/"), timeout=LONG_MS)
            assert await _status(carol, base) == 200

            # alice revokes bob's share: the server refuses him at once; carol keeps hers
            status, left = await hub.call(
                "PATCH", "/shares/alice/", token=alice, json={"user": "bob"}
            )
            assert (status, left) == (200, {})
            await _refused(bob, base)
            assert await _status(carol, base) == 200
            # carol leaves on her own
            status, _ = await hub.call("GET", "/users/carol/shared", token=alice)
            assert status == 404  # alice may not read carol's shares
            carol_token = await hub.user("carol")
            status, _ = await hub.call("DELETE", "/users/carol/shared/alice/", token=carol_token)
            assert status == 204
            await _refused(carol, base)
        finally:
            await browser.close()

    types = await hub.event_types("share.")
    assert types == [
        "share.granted",
        "share.code_created",
        "share.code_accepted",
        "share.granted",
        "share.revoked",
        "share.revoked",
    ]
    status, _ = await hub.call("DELETE", "/users/alice/server", token=alice)
    assert status == 204
