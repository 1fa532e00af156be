"""Three ``chronohub serve`` processes on one database and one data directory behind nginx,
round robin (issue 20): whichever process answers a request, the answer is the same. Every
test alternates the processes (nginx's strict round robin; the ``X-Upstream`` header says
which one answered each step, and the tests check that the steps that must meet in the
database were answered by different processes): login throttling, login cookies, OAuth
codes, tokens, the proxy's routing table, a spawn's progress and a collaboration session."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.helpers import wait_for
from tests.integration.browser import PASSWORD, Browser
from tests.integration.nginx_hubs import OPERATOR, UPSTREAM, Answer, Hubs, StartHubs
from tests.integration.oauth_fixtures import REDIRECT, WHOAMI_TOKEN, authorize_url, pkce

pytestmark = [pytest.mark.integration, pytest.mark.interop]


async def login(browser: Browser, name: str, password: str = PASSWORD) -> tuple[Any, str]:
    """The login form (one process) and its submission (the next one); the second's page and
    the process that answered it."""
    form = await browser.get("/hub/login")
    assert form.status == 200, form.text
    page = await browser.post(
        "/hub/login",
        data={"_xsrf": form.hidden("_xsrf"), "username": name, "password": password},
    )
    assert page.response.headers[UPSTREAM] != form.response.headers[UPSTREAM]
    return page, page.response.headers[UPSTREAM]


async def test_login_throttling_counts_failures_made_at_every_process(
    nginx_hubs: StartHubs,
) -> None:
    hubs = await nginx_hubs(3)
    browser = Browser(hubs.base)
    try:
        answered = set()
        for _ in range(2):
            page, upstream = await login(browser, "alice", "wrong password")
            assert page.status == 403
            answered.add(upstream)
        page, upstream = await login(browser, "alice", "wrong password")
        answered.add(upstream)
        assert "the account is locked for" in page.text
        assert len(answered) >= 2  # the three failures were counted by different processes
        locked, upstream = await login(browser, "alice")  # the right password
        assert locked.status == 429
        assert "Too many failed logins for this user" in locked.text
        assert (await login(browser, "guess0", "wrong password"))[0].status == 403
        assert (await login(browser, "guess1", "wrong password"))[0].status == 403
        limited, _ = await login(browser, "bob")
        assert limited.status == 429
        assert "Too many failed logins from this address" in limited.text
    finally:
        await browser.close()


async def test_a_login_cookie_is_a_session_at_every_process_until_logged_out(
    nginx_hubs: StartHubs,
) -> None:
    hubs = await nginx_hubs(3)
    browser = Browser(hubs.base)
    try:
        page, _ = await login(browser, "alice")
        assert page.status == 302
        kept = browser.cookie("jupyterhub-hub-login")
        answered = set()
        for _ in range(3):
            me = await browser.get("/hub/api/user")
            assert me.status == 200, me.text
            assert json.loads(me.text)["name"] == "alice"
            answered.add(me.response.headers[UPSTREAM])
        assert len(answered) == 3
        form = await browser.get("/hub/logout")
        out = await browser.post("/hub/logout", data={"_xsrf": form.hidden("_xsrf")})
        assert out.status == 302
        assert browser.cookie("jupyterhub-hub-login") is None
        # Someone who kept the cookie is refused by every process at once.
        browser.session.cookie_jar.update_cookies({"jupyterhub-hub-login": kept or ""})
        answered = set()
        for _ in range(3):
            me = await browser.get("/hub/api/user")
            assert me.status == 403, me.text
            answered.add(me.response.headers[UPSTREAM])
        assert len(answered) == 3
    finally:
        await browser.close()


async def test_an_oauth_code_issued_by_one_process_is_redeemed_once_at_another(
    nginx_hubs: StartHubs,
) -> None:
    hubs = await nginx_hubs(3)
    browser = Browser(hubs.base)
    try:
        assert (await login(browser, "alice"))[0].status == 302
        verifier, challenge = pkce()
        page = await browser.get(
            authorize_url(redirect_uri=REDIRECT, code_challenge=challenge,
                          code_challenge_method="S256")
        )  # fmt: skip
        if page.status == 200:  # the consent page
            page = await browser.post(
                "/hub/api/oauth2/authorize", data=[*page.fields(), ("approve", "1")]
            )
        assert page.status == 302, page.text
        code = parse_qs(urlsplit(page.location or "").query)["code"][0]
        issued_by = page.response.headers[UPSTREAM]
        first = await redeem(hubs, code, verifier)
        assert first.status == 200, first
        assert first.upstream != issued_by
        me = await hubs.call("GET", "/user", token=first.body["access_token"])
        assert me.status == 200
        assert me.body["name"] == "alice"
        again = await redeem(hubs, code, verifier)  # used: refused by the next process too
        assert again.status == 400
        assert again.body["error"] == "invalid_grant"
        assert again.upstream != first.upstream
    finally:
        await browser.close()


async def redeem(hubs: Hubs, code: str, verifier: str) -> Answer:
    """The service's server-side exchange of ``code`` for a token, through nginx."""
    form = {
        "grant_type": "authorization_code", "client_id": "service-whoami",
        "client_secret": WHOAMI_TOKEN, "redirect_uri": REDIRECT, "code": code,
        "code_verifier": verifier,
    }  # fmt: skip
    async with hubs.session.post(hubs.url("/hub/api/oauth2/token"), data=form) as response:
        return Answer(response.status, await response.json(), response.headers[UPSTREAM])


async def test_a_token_made_at_one_process_is_revoked_at_another_for_all(
    nginx_hubs: StartHubs,
) -> None:
    hubs = await nginx_hubs(3)
    made = await hubs.call("POST", "/users/alice/tokens", json={})
    assert made.status == 201, made
    token = made.body["token"]
    uses = [await hubs.call("GET", "/user", token=token) for _ in range(3)]
    assert [u.status for u in uses] == [200, 200, 200]
    assert {u.upstream for u in uses} | {made.upstream} == {
        hubs.upstream_of(p) for p in hubs.processes
    }
    revoked = await hubs.call("DELETE", f"/users/alice/tokens/{made.body['id']}")
    assert revoked.status == 204
    refused = [await hubs.call("GET", "/user", token=token) for _ in range(3)]
    assert [r.status for r in refused] == [403, 403, 403]
    assert len({r.upstream for r in refused}) == 3


async def test_a_server_spawned_through_one_process_is_followed_and_reached_through_all(
    nginx_hubs: StartHubs,
) -> None:
    hubs = await nginx_hubs(3)
    spawned = await hubs.call("POST", "/users/alice/server")
    assert spawned.status == 202, spawned
    # Its progress, followed from the two other processes while the first runs the spawn.
    followers = await asyncio.wait_for(asyncio.gather(progress(hubs), progress(hubs)), 60)
    assert {f[1] for f in followers} | {spawned.upstream} == {
        hubs.upstream_of(p) for p in hubs.processes
    }
    for events, _ in followers:
        assert events[-1]["ready"] is True, events
        assert events[-1]["url"] == "/user/alice/"
    # Every process's proxy routes to it (each reads the routing table from the database).
    answered: set[str] = set()

    async def reached_everywhere() -> bool:
        async with hubs.session.get(hubs.url("/user/alice/api"), allow_redirects=False) as r:
            if r.status == 200 and (await r.json()) == {"version": "fake"}:
                answered.add(r.headers[UPSTREAM])
        return len(answered) == 3

    # At once, not at the next periodic check of the routes (every 5 s by default): the
    # other processes' proxies are woken by the log.
    await wait_for(reached_everywhere, timeout_s=2, every_s=0.05)
    stopped = await hubs.call("DELETE", "/users/alice/server")
    assert stopped.status in (202, 204), stopped
    gone: set[str] = set()

    async def unrouted_everywhere() -> bool:
        async with hubs.session.get(hubs.url("/user/alice/api"), allow_redirects=False) as r:
            if r.status != 200:
                gone.add(r.headers[UPSTREAM])
        return len(gone) == 3

    await wait_for(unrouted_everywhere, timeout_s=2, every_s=0.05)


async def progress(hubs: Hubs) -> tuple[list[dict[str, Any]], str]:
    """The progress events of alice's server to the end of the stream, and who sent them."""
    events = []
    async with hubs.session.get(
        hubs.url("/hub/api/users/alice/server/progress"),
        headers={"Authorization": "token " + OPERATOR},
    ) as response:
        assert response.status == 200, await response.text()
        async for line in response.content:
            if line.startswith(b"data: "):
                events.append(json.loads(line[6:]))
        return events, response.headers[UPSTREAM]


async def test_a_collab_session_made_through_one_process_is_used_through_the_others(
    nginx_hubs: StartHubs,
) -> None:
    hubs = await nginx_hubs(3)
    alice = (await hubs.call("POST", "/users/alice/tokens", json={})).body["token"]
    notebook = {
        "nbformat": 4, "nbformat_minor": 5, "metadata": {},
        "cells": [{"id": "c0", "cell_type": "code", "source": "print(6 * 7)", "metadata": {},
                   "outputs": [], "execution_count": None}],
    }  # fmt: skip
    made = await hubs.call("POST", "/collab/sessions", alice, json={"notebook": notebook})
    assert made.status == 201, made
    one = f"/collab/sessions/{made.body['id']}"
    shown = [await hubs.call("GET", one, alice) for _ in range(3)]
    assert [s.status for s in shown] == [200, 200, 200]
    assert len({s.upstream for s in shown}) == 3
    asked = await hubs.call("POST", f"{one}/execute", alice, json={"cell_id": "c0"})
    assert asked.status == 202, asked
    ended = await hubs.call("DELETE", one, alice)
    assert ended.status == 204
    assert [(await hubs.call("GET", one, alice)).status for _ in range(3)] == [404, 404, 404]
