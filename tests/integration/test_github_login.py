"""Logging in with the GitHub preset and ``allowed_organizations``.

GitHub itself cannot be reached from here, so a small stand-in on 127.0.0.1 answers the four
GitHub endpoints the preset uses, as GitHub documents them: the authorize redirect, the token
exchange, ``GET /user`` and ``GET /user/orgs`` (paginated with ``Link: rel="next"``), and the
one oauthenticator's ``GitHubOAuthenticator`` uses for ``allowed_organizations``:
``GET /orgs/{org}/members/{username}`` (204 for a member; test_jupyterhub_authenticators). The
flow on chronohub's side is the real one (its login button, callback, code exchange with
PKCE, user creation)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import asyncpg
import pytest
from aiohttp import web

from events import store
from tests.integration.api_fixtures import Api
from tests.integration.browser import Browser, running_hub

pytestmark = pytest.mark.integration

CLIENT_ID = "gh-client"
CLIENT_SECRET = "gh-secret-0123456789"


@dataclass
class GitHub:
    """The stand-in's state: who each code and token stands for, and their organisations."""

    orgs: dict[str, list[str]]
    codes: dict[str, tuple[str, str]] = field(default_factory=dict)  # code -> (login, challenge)
    tokens: dict[str, str] = field(default_factory=dict)  # access token -> login
    next_login: str = ""
    org_pages_served: int = 0
    orgs_status: int = 200

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/login/oauth/authorize", self.authorize)
        app.router.add_post("/login/oauth/access_token", self.access_token)
        app.router.add_get("/user", self.user)
        app.router.add_get("/user/orgs", self.user_orgs)
        app.router.add_get("/orgs/{org}/members/{username}", self.org_member)
        return app

    async def authorize(self, request: web.Request) -> web.Response:
        assert request.query["client_id"] == CLIENT_ID
        assert request.query["scope"] == "read:org"
        code = secrets.token_hex(8)
        self.codes[code] = (self.next_login, request.query["code_challenge"])
        back = urlencode({"code": code, "state": request.query["state"]})
        raise web.HTTPFound(f"{request.query['redirect_uri']}?{back}")

    async def access_token(self, request: web.Request) -> web.Response:
        form = await request.post()
        login, challenge = self.codes.pop(str(form["code"]))
        verifier = str(form["code_verifier"]).encode()
        expected = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
        if form["client_secret"] != CLIENT_SECRET or expected.decode() != challenge:
            return web.json_response({"error": "bad_verification_code"})
        token = "gho_" + secrets.token_hex(8)
        self.tokens[token] = login
        return web.json_response({"access_token": token, "token_type": "bearer"})

    def _login(self, request: web.Request) -> str:
        token = request.headers["Authorization"].removeprefix("Bearer ")
        return self.tokens[token]

    async def user(self, request: web.Request) -> web.Response:
        # GitHub always sends "email": null when the user keeps theirs private
        return web.json_response({"login": self._login(request), "id": 1, "email": None})

    async def org_member(self, request: web.Request) -> web.Response:
        self._login(request)  # a valid token is needed
        name = request.match_info["username"].lower()
        orgs = next((o for login, o in self.orgs.items() if login.lower() == name), [])
        if request.match_info["org"].lower() in {o.lower() for o in orgs}:
            return web.Response(status=204)
        return web.json_response({"message": "User does not exist or is not a member"}, status=404)

    async def user_orgs(self, request: web.Request) -> web.Response:
        if self.orgs_status != 200:
            return web.json_response({"message": "Bad credentials"}, status=self.orgs_status)
        self.org_pages_served += 1
        per_page = int(request.query.get("per_page", "30"))
        page = int(request.query.get("page", "1"))
        orgs = self.orgs[self._login(request)]
        chunk = orgs[(page - 1) * per_page : page * per_page]
        headers = {}
        if page * per_page < len(orgs):
            following = request.url.update_query({"page": str(page + 1)})
            headers["Link"] = f'<{following}>; rel="next"'
        return web.json_response(
            [{"login": o, "id": i} for i, o in enumerate(chunk)], headers=headers
        )


@pytest.fixture
async def github() -> AsyncIterator[tuple[GitHub, str]]:
    many = [f"club-{i}" for i in range(150)]
    fake = GitHub(orgs={"Octo": [*many, "Jupyter"], "Mona": many})
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield fake, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def hub(
    event_store: store.EventStore, github: tuple[GitHub, str]
) -> AsyncIterator[tuple[Api, str]]:
    _, gh = github
    upstream = {
        "preset": "github",
        "authorize_url": f"{gh}/login/oauth/authorize",
        "token_url": f"{gh}/login/oauth/access_token",
        "userdata_url": f"{gh}/user",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "allowed_organizations": ["jupyter"],
        "allow_insecure_http": True,
    }
    async with running_hub(event_store, authenticator="oauth", oauth=upstream) as running:
        yield running


async def _log_in(fake: GitHub, base: str, login: str) -> tuple[Browser, Any]:
    fake.next_login = login
    browser = Browser(base)
    to_github = await browser.get("/hub/oauth_login?next=/hub/home")
    assert to_github.status == 302
    back = await browser.get(to_github.location or "")
    assert back.status == 302
    return browser, await browser.get(back.location or "")


async def test_a_member_of_an_allowed_organisation_on_a_later_page_logs_in(
    hub: tuple[Api, str], github: tuple[GitHub, str]
) -> None:
    api, base = hub
    fake, _ = github
    browser, page = await _log_in(fake, base, "Octo")
    try:
        assert page.status == 302, page.text
        assert page.location == "/hub/home"
        assert fake.org_pages_served == 2  # "Jupyter" is the 151st: on page two of 100
        status, user = await api.call("GET", "/users/octo")
        assert status == 200, user
    finally:
        await browser.close()


async def test_someone_in_none_of_the_allowed_organisations_is_refused(
    hub: tuple[Api, str], github: tuple[GitHub, str], pool: asyncpg.Pool[Any]
) -> None:
    api, base = hub
    fake, _ = github
    browser, page = await _log_in(fake, base, "Mona")
    try:
        assert page.status == 403
        assert "User mona is not allowed to log in" in page.text
        assert (await api.call("GET", "/users/mona"))[0] == 404
        assert await pool.fetchval("SELECT count(*) FROM login_sessions") == 0
    finally:
        await browser.close()


async def test_github_refusing_the_organisation_list_is_a_clear_upstream_error(
    hub: tuple[Api, str], github: tuple[GitHub, str]
) -> None:
    api, base = hub
    fake, _ = github
    fake.orgs_status = 401
    browser, page = await _log_in(fake, base, "Octo")
    try:
        assert page.status == 403  # the login page answers upstream trouble as a refusal
        assert "/user/orgs?per_page=100 answered 401" in page.text
        assert (await api.call("GET", "/users/octo"))[0] == 404
    finally:
        await browser.close()
