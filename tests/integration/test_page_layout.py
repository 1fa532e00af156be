"""The layout every page shares, in a browser: the navigation bar (admin link only for those
holding ``admin-ui``, sign-out in one click), the stylesheets and favicon it links, server
status badges, times with their age, and sentences in place of empty tables."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from events import store
from hub.web import html
from tests.integration.api_fixtures import Api
from tests.integration.browser import Browser, Page, running_hub, set_password
from tests.integration.spawn_fixtures import SpawnHub, StartHub

pytestmark = pytest.mark.integration

SIGN_OUT = re.compile(
    r'<form class="signout" method="post" action="/hub/logout">\s*'
    r'<input type="hidden" name="_xsrf" value="([^"]+)">\s*'
    r'<button type="submit"[^>]*>Sign out</button>'
)
SERVER = re.compile(r'<tr class="server" data-name="([^"]*)">(.*?)</tr>', re.S)
BADGE = re.compile(r'<span class="badge" data-status="(\w+)"[^>]*>(?:<span class="state">)?(\w+)<')


@pytest.fixture
async def hub(event_store: store.EventStore) -> AsyncIterator[tuple[Api, str]]:
    async with running_hub(event_store, admin_users=["ada"]) as running:
        yield running


async def _browser(hub: tuple[Api, str], name: str) -> Browser:
    api, base = hub
    await set_password(api, name)
    browser = Browser(base)
    assert (await browser.login(name)).status == 302
    return browser


def badges(page: Page) -> dict[str, tuple[str, str]]:
    """Each server row of the home page: its badge's status and the state it shows."""
    found = {}
    for name, row in SERVER.findall(page.text):
        match = BADGE.search(row)
        assert match is not None, row
        found[name] = (match.group(1), match.group(2))
    return found


async def _signed_in(spawn: SpawnHub, name: str) -> Browser:
    browser = spawn.browser()
    assert (await browser.login(name)).status == 302
    return browser


# --- the navigation bar ----------------------------------------------------------------------


async def test_every_page_of_a_user_has_the_bar_without_admin(hub: tuple[Api, str]) -> None:
    ann = await _browser(hub, "ann")
    try:
        for path in ("/hub/home", "/hub/token", "/hub/password", "/hub/logout"):
            page = await ann.get(path)
            assert page.status == 200, (path, page.text)
            assert '<a href="/hub/home"' in page.text
            assert '<a href="/hub/token"' in page.text
            assert "/hub/admin" not in page.text
            assert 'id="user">ann<' in page.text
            assert SIGN_OUT.search(page.text), path
            assert page.response.headers["X-Frame-Options"] == "DENY"
            assert page.response.headers["Cache-Control"] == "no-store"
        token = await ann.get("/hub/token")
        assert '<a href="/hub/token" aria-current="page">Token</a>' in token.text
        # An error page (no admin-ui: 403) has the bar too.
        refused = await ann.get("/hub/admin")
        assert refused.status == 403
        assert 'id="user">ann<' in refused.text
        assert SIGN_OUT.search(refused.text)
    finally:
        await ann.close()


async def test_an_admin_sees_the_admin_link_everywhere(hub: tuple[Api, str]) -> None:
    ada = await _browser(hub, "ada")
    try:
        for path in ("/hub/home", "/hub/token"):
            page = await ada.get(path)
            assert page.status == 200
            assert '<a href="/hub/admin">Admin</a>' in page.text
        groups = await ada.get("/hub/admin/groups")
        assert groups.status == 200
        assert '<a href="/hub/admin" aria-current="page">Admin</a>' in groups.text
    finally:
        await ada.close()


async def test_sign_out_is_one_click_from_any_page(hub: tuple[Api, str]) -> None:
    ann = await _browser(hub, "ann")
    try:
        token = await ann.get("/hub/token")
        match = SIGN_OUT.search(token.text)
        assert match is not None
        out = await ann.post("/hub/logout", data={"_xsrf": match.group(1)})
        assert (out.status, out.location) == (302, "/hub/login")
        home = await ann.get("/hub/home")
        assert home.status == 302
        assert (home.location or "").startswith("/hub/login")
        # Signed out: the bar offers to sign in, and has no form.
        login = await ann.get("/hub/login")
        assert login.status == 200
        assert "signout" not in login.text
        assert 'id="user"' not in login.text
    finally:
        await ann.close()


async def test_sign_out_without_the_token_is_refused(hub: tuple[Api, str]) -> None:
    ann = await _browser(hub, "ann")
    try:
        assert (await ann.post("/hub/logout")).status == 403
        assert (await ann.get("/hub/home")).status == 200  # still signed in
    finally:
        await ann.close()


# --- static files and the favicon ------------------------------------------------------------


async def test_the_stylesheets_and_icon_are_served_to_anyone(hub: tuple[Api, str]) -> None:
    browser = Browser(hub[1])
    try:
        login = await browser.get("/hub/login")
        assert login.status == 200
        links = re.findall(r'href="(/hub/static/[^"]+)"', login.text)
        assert len(links) == 3
        for link in links:
            assert link.endswith(f"?v={html.version.CHRONOHUB}")
            answer = await browser.get(link)
            assert answer.status == 200, link
            assert "max-age=" in answer.response.headers["Cache-Control"]
        css = await browser.get("/hub/static/chronohub.css")
        assert css.response.headers["Content-Type"].startswith("text/css")
        assert ".badge" in css.text
        pico = await browser.get("/hub/static/vendor/pico-2.1.1.min.css")
        assert pico.status == 200
        assert "Pico CSS" in pico.text[:200]
        icon = await browser.get("/hub/static/favicon.svg")
        assert icon.response.headers["Content-Type"] == "image/svg+xml"
        assert icon.text.startswith("<svg")
        assert (await browser.get("/hub/static/nothing.css")).status == 404
        assert (await browser.get("/hub/static/../html.py")).status in (403, 404)
    finally:
        await browser.close()


@pytest.mark.parametrize("path", ["/favicon.ico", "/hub/favicon.ico"])
async def test_the_favicon_where_browsers_look(hub: tuple[Api, str], path: str) -> None:
    browser = Browser(hub[1])
    try:
        answer = await browser.get(path)
        assert answer.status == 301
        assert (answer.location or "").startswith("/hub/static/favicon.svg")
        icon = await browser.follow(answer)
        assert icon.status == 200
        assert icon.response.headers["Content-Type"] == "image/svg+xml"
    finally:
        await browser.close()


# --- sentences for empty tables, times -------------------------------------------------------


async def test_empty_tables_are_a_sentence(hub: tuple[Api, str]) -> None:
    ada = await _browser(hub, "ada")
    try:
        token = await ada.get("/hub/token")
        assert token.status == 200
        assert "No tokens yet." in token.text
        assert "No applications act as you." in token.text
        assert "<table>" not in token.text
        groups = await ada.get("/hub/admin/groups")
        assert groups.status == 200
        assert "No groups yet." in groups.text
        nobody = await ada.get("/hub/admin?name_filter=zzz")
        assert nobody.status == 200
        assert "No user's name contains “zzz”." in nobody.text
        assert 'class="user"' not in nobody.text
        home = await ada.get("/hub/home")  # this hub spawns nothing
        assert "This hub does not start notebook servers." in home.text
    finally:
        await ada.close()


async def test_times_show_their_age_and_the_exact_time_on_hover(hub: tuple[Api, str]) -> None:
    ann = await _browser(hub, "ann")
    try:
        page = await ann.get("/hub/token")
        issued = await ann.post(
            "/hub/token",
            data={"_xsrf": page.hidden("_xsrf"), "note": "sync", "expires_in": "86400"},
        )
        assert issued.status == 201, issued.text
        row = re.search(r'<tr class="token" data-id="[^"]+">(.*?)</tr>', issued.text, re.S)
        assert row is not None
        times = re.findall(
            r'<time datetime="([0-9T:-]+Z)" title="\1">[0-9-]+ [0-9:]+ UTC'
            r' <span class="age">\(([^)]+)\)</span></time>',
            row.group(1),
        )
        created, expires = (age for _, age in times)
        assert created == "just now"
        assert expires in ("in 23 h", "in 1 day")
        assert "never" in row.group(1)  # not used yet
    finally:
        await ann.close()


# --- server badges ---------------------------------------------------------------------------


async def test_home_and_admin_show_running_and_stopped_badges(spawn_hub: StartHub) -> None:
    spawn = await spawn_hub("serve", admin_users=["ada"], allow_named_servers=True)
    await spawn.people("ada", "ann")
    ann = await _signed_in(spawn, "ann")
    home = await ann.get("/hub/home")
    assert home.status == 200
    assert badges(home) == {"": ("stopped", "stopped")}
    started = await ann.post(
        "/hub/spawn/ann", data={"_xsrf": home.hidden("_xsrf"), "server_name": "analysis"}
    )
    assert started.status == 302, started.text
    stopped = await ann.post("/hub/stop/ann/analysis", data={"_xsrf": home.hidden("_xsrf")})
    assert stopped.status == 302
    started = await ann.post("/hub/spawn/ann", data={"_xsrf": home.hidden("_xsrf")})
    assert started.status == 302
    home = await ann.get("/hub/home")
    assert badges(home) == {"": ("running", "ready"), "analysis": ("stopped", "stopped")}

    ada = await _signed_in(spawn, "ada")
    admin = await ada.get("/hub/admin")
    assert admin.status == 200
    assert (
        '<span class="badge" data-status="running" title="running">'
        '<span class="state">ready</span></span>'
    ) in admin.text


async def test_a_failed_server_has_a_failed_badge(spawn_hub: StartHub) -> None:
    spawn = await spawn_hub("exit")
    await spawn.people("ann")
    ann = await _signed_in(spawn, "ann")
    home = await ann.get("/hub/home")
    failed = await ann.post("/hub/spawn/ann", data={"_xsrf": home.hidden("_xsrf")})
    assert failed.status == 500
    assert "Spawn failed" in failed.text
    assert SIGN_OUT.search(failed.text)
    home = await ann.get("/hub/home")
    assert badges(home) == {"": ("failed", "failed")}


async def test_a_starting_server_is_pending_with_the_bar_on_its_page(
    spawn_hub: StartHub,
) -> None:
    spawn = await spawn_hub("hang", slow_spawn_timeout=0, start_timeout=30)
    await spawn.people("ann")
    ann = await _signed_in(spawn, "ann")
    home = await ann.get("/hub/home")
    started = await ann.post("/hub/spawn/ann", data={"_xsrf": home.hidden("_xsrf")})
    assert started.status == 303
    waiting = await ann.get(started.location or "")
    assert waiting.status == 200
    assert '<meta http-equiv="refresh"' in waiting.text
    assert 'id="user">ann<' in waiting.text
    assert SIGN_OUT.search(waiting.text)
    home = await ann.get("/hub/home")
    status, state = badges(home)[""]
    assert status == "pending"
    assert state in ("spawning", "started")
