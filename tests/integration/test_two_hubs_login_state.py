"""Two real ``chronohub serve`` processes on one database, each with a data directory of its
own, sharing only the database and the configured cookie secret (issue 20): login state made
in one is honoured by the other at once. Each test alternates the processes: login
throttling, OAuth authorization codes, login sessions and their logout, token revocation."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers import service_toml
from tests.integration.api_fixtures import CONFIG
from tests.integration.browser import PASSWORD, Browser
from tests.integration.oauth_fixtures import WHOAMI_TOKEN, exchange, get_code, pkce
from tests.integration.serve_process import chronohub_serve

pytestmark = pytest.mark.integration

OPERATOR = "operator-secret-0123456789abcdef0123"
TOML = (
    f'cookie_secret = "{CONFIG["cookie_secret"]}"\n'
    "login_lockout_failures = 3\n"
    "login_address_max_failures = 5\n"
    + service_toml(OPERATOR, ["admin:users", "tokens"])
    + f"""
[[services]]
name = "whoami"
api_token = "{WHOAMI_TOKEN}"
url = "http://127.0.0.1:10101"
oauth_client_allowed_scopes = ["read:users:name!user"]

[[roles]]
name = "whoami-users"
scopes = ["access:services!service=whoami"]
users = ["alice"]
"""
)


class Hub:
    """One serving process: its public address, and its API called as the operator."""

    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base = base
        self.session = session

    def url(self, path: str) -> str:
        return self.base.rstrip("/") + path

    async def call(
        self, method: str, path: str, token: str | None = OPERATOR, **kwargs: Any
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"token {token}"} if token else {}
        async with self.session.request(
            method, self.url("/hub/api" + path), headers=headers, **kwargs
        ) as response:
            text = await response.text()
            return response.status, json.loads(text) if text else None


@pytest.fixture
async def hubs(db_url: str, tmp_path: Path) -> AsyncIterator[tuple[Hub, Hub]]:
    """Hubs A and B, with alice and bob given the test password (through A)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        a = await stack.enter_async_context(chronohub_serve(db_url, tmp_path / "a", TOML))
        b = await stack.enter_async_context(chronohub_serve(db_url, tmp_path / "b", TOML))
        hub_a, hub_b = Hub(a, session), Hub(b, session)
        for name in ("alice", "bob"):
            assert (await hub_a.call("POST", f"/users/{name}"))[0] in (201, 409)  # roles make some
            status, reply = await hub_a.call(
                "PUT", f"/users/{name}/password", json={"password": PASSWORD}
            )
            assert status == 204, reply
        yield hub_a, hub_b


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """One browser for both hubs: cookies are per host, not per port, as behind one balancer."""
    opened = Browser("http://127.0.0.1/")
    yield opened
    await opened.close()


async def login(browser: Browser, hub: Hub, name: str, password: str = PASSWORD) -> Any:
    form = await browser.get(hub.url("/hub/login"))
    assert form.status == 200, form.text
    return await browser.post(
        hub.url("/hub/login"),
        data={"_xsrf": form.hidden("_xsrf"), "username": name, "password": password},
    )


async def test_failed_logins_on_one_hub_lock_the_account_on_the_other(
    hubs: tuple[Hub, Hub], browser: Browser
) -> None:
    a, b = hubs
    assert (await login(browser, a, "alice", "wrong password")).status == 403
    assert (await login(browser, b, "alice", "wrong password")).status == 403
    third = await login(browser, a, "alice", "wrong password")
    assert "the account is locked for" in third.text
    locked = await login(browser, b, "alice")  # the right password, on the other hub
    assert locked.status == 429
    assert "Too many failed logins for this user" in locked.text
    # The address limit too: five failures spread over both hubs.
    assert (await login(browser, b, "guess0", "wrong password")).status == 403
    assert (await login(browser, a, "guess1", "wrong password")).status == 403
    limited = await login(browser, b, "bob")
    assert limited.status == 429
    assert "Too many failed logins from this address" in limited.text


async def test_a_login_on_one_hub_is_a_session_on_the_other_until_logged_out_on_the_first(
    hubs: tuple[Hub, Hub], browser: Browser
) -> None:
    a, b = hubs
    assert (await login(browser, a, "alice")).status == 302
    me = await browser.get(b.url("/hub/api/user"))
    assert me.status == 200, me.text
    assert json.loads(me.text)["name"] == "alice"
    page = await browser.get(a.url("/hub/logout"))
    assert (
        await browser.post(a.url("/hub/logout"), data={"_xsrf": page.hidden("_xsrf")})
    ).status == 302
    assert browser.cookie("jupyterhub-hub-login") is None  # the browser forgot it…
    # …and someone who kept it is refused by the other hub at once.
    again = Browser("http://127.0.0.1/")
    try:
        assert (await login(again, a, "alice")).status == 302
        kept = again.cookie("jupyterhub-hub-login")
        assert (await again.get(b.url("/hub/api/user"))).status == 200
        page = await again.get(b.url("/hub/logout"))
        out = await again.post(b.url("/hub/logout"), data={"_xsrf": page.hidden("_xsrf")})
        assert out.status == 302
        again.session.cookie_jar.update_cookies({"jupyterhub-hub-login": kept or ""})
        assert (await again.get(a.url("/hub/api/user"))).status == 403
        assert (await again.get(b.url("/hub/api/user"))).status == 403
    finally:
        await again.close()


async def test_an_oauth_code_issued_by_one_hub_is_exchanged_once_on_the_other(
    hubs: tuple[Hub, Hub], browser: Browser
) -> None:
    a, b = hubs
    assert (await login(browser, a, "alice")).status == 302
    verifier, challenge = pkce()
    browser.base = a.url("/")
    code = await get_code(browser, challenge)  # issued by A
    browser.base = b.url("/")
    status, reply = await exchange(browser, code=code, code_verifier=verifier)  # on B
    assert status == 200, reply
    assert (await a.call("GET", "/user", token=reply["access_token"]))[1]["name"] == "alice"
    browser.base = a.url("/")
    status, reply = await exchange(browser, code=code, code_verifier=verifier)  # used: on A
    assert status == 400
    assert reply["error"] == "invalid_grant"


async def test_a_token_revoked_on_one_hub_is_refused_at_once_on_the_other(
    hubs: tuple[Hub, Hub],
) -> None:
    a, b = hubs
    status, issued = await a.call("POST", "/users/alice/tokens", json={})
    assert status == 201, issued
    token = issued["token"]
    assert (await b.call("GET", "/user", token=token))[0] == 200  # B has seen it in use
    assert (await a.call("DELETE", f"/users/alice/tokens/{issued['id']}"))[0] == 204
    assert (await b.call("GET", "/user", token=token))[0] == 403
    assert (await a.call("GET", "/user", token=token))[0] == 403
