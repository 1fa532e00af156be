"""Logging in to chronohub through an upstream OAuth2 provider, tested against a second
chronohub acting as that provider (its own database), not a mock.

Hub A uses ``authenticator = "oauth"`` with the provider's endpoints; hub B has A
registered as an OAuth client (a service with a redirect URI). The browser reaches B as
``localhost`` and A as ``127.0.0.1`` so that the two hubs' login cookies, both named as
JupyterHub names them, do not overwrite each other in one cookie jar."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import asyncpg
import pytest

from events import store
from hub import database
from projections import base, catalog
from tests import ports
from tests.conftest import TEMPLATE, create_database, drop_database
from tests.integration.api_fixtures import CONFIG, Api
from tests.integration.browser import Browser, Page, running_hub, set_password

pytestmark = pytest.mark.integration

HUB_A_SECRET = "hub-a-client-secret-0123456789abcdef"


@pytest.fixture
async def provider_store(pg_server: str, template_url: str) -> AsyncIterator[store.EventStore]:
    """The second chronohub's event store, on a database of its own."""
    url = await create_database(pg_server, TEMPLATE)
    pool = await database.create_pool(url, min_size=1, max_size=5)
    try:
        yield store.EventStore(pool, inline=base.Inline(catalog.ALL))
    finally:
        await pool.close()
        await drop_database(pg_server, url)


def provider_config(a_url: str, users: list[str]) -> dict[str, Any]:
    """Hub B's settings as an OAuth provider for hub A at ``a_url``: A is B's service hub-a,
    sending its users back to A's callback, and ``users`` may log in to it."""
    return {
        "services": [
            *CONFIG["services"],
            {
                "name": "hub-a",
                "api_token": HUB_A_SECRET,
                "oauth_redirect_uri": a_url + "/hub/oauth_callback",
                "oauth_no_confirm": True,
            },
        ],
        "roles": [
            *CONFIG["roles"],
            {
                "name": "hub-a-users",
                "scopes": ["access:services!service=hub-a"],
                "users": users,
            },
        ],
    }


@pytest.fixture
async def hubs(
    event_store: store.EventStore, provider_store: store.EventStore
) -> AsyncIterator[tuple[Api, str, Api, str]]:
    """(hub A's API, A's URL, provider B's API, B's URL as the browser reaches it)."""
    a_port = ports.free_port()
    a_url = f"http://127.0.0.1:{a_port}"
    provider = provider_config(a_url, ["alice", "carol"])
    async with running_hub(provider_store, **provider) as (b_api, b_url):
        b_port = urlsplit(b_url).port
        upstream = {
            "authorize_url": f"http://localhost:{b_port}/hub/api/oauth2/authorize",
            "token_url": f"{b_url}/hub/api/oauth2/token",
            "userdata_url": f"{b_url}/hub/api/user",
            "client_id": "service-hub-a",
            "client_secret": HUB_A_SECRET,
            "username_claim": "name",
            "allowed_users": ["alice"],
            "login_service": "Hub B",
            "allow_insecure_http": True,
        }
        async with running_hub(event_store, port=a_port, authenticator="oauth", oauth=upstream) as (
            a_api,
            a_base,
        ):
            assert a_base == a_url
            yield a_api, a_url, b_api, f"http://localhost:{b_port}"


async def log_in_upstream(browser: Browser, b_url: str, name: str) -> Page:
    """Hub A's login button → B's login → B authorizes → the redirect back to A's callback
    (not yet followed)."""
    page = await browser.get("/hub/login")
    assert page.status == 200
    assert "Sign in with Hub B" in page.text
    to_b = await browser.get("/hub/oauth_login?next=/hub/home")
    assert to_b.status == 302
    authorize = to_b.location or ""
    assert authorize.startswith(b_url + "/hub/api/oauth2/authorize?")
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == [browser.base + "/hub/oauth_callback"]
    login = await browser.get(authorize)
    assert login.status == 302
    b_login = urljoin(authorize, login.location or "")
    form = await browser.get(b_login)
    signed_in = await browser.post(
        b_login, data={"_xsrf": form.hidden("_xsrf"), "username": name, "password": "b password"}
    )
    assert signed_in.status == 302, signed_in.text
    back = await browser.get(urljoin(b_login, signed_in.location or ""))
    assert back.status == 302, back.text
    assert (back.location or "").startswith(browser.base + "/hub/oauth_callback?code=")
    return back


async def test_logging_in_through_a_second_chronohub(
    hubs: tuple[Api, str, Api, str], pool: asyncpg.Pool[Any]
) -> None:
    _, a_url, b_api, b_url = hubs
    await set_password(b_api, "alice", "b password")
    browser = Browser(a_url)
    try:
        back = await log_in_upstream(browser, b_url, "alice")
        home = await browser.get(back.location or "")
        assert home.status == 302, home.text
        assert home.location == "/hub/home"
        me = await browser.get("/hub/api/user")
        assert me.status == 200
        assert (await me.response.json())["name"] == "alice"
    finally:
        await browser.close()
    rows = await pool.fetch(
        "SELECT event_type, data->>'authenticator' AS how FROM events"
        " WHERE event_type IN ('user.created', 'user.logged_in') AND data->>'name' = 'alice'"
    )
    assert sorted((r["event_type"], r["how"]) for r in rows) == [
        ("user.created", None),
        ("user.logged_in", "oauth"),
    ]
    # Hub A has no password for alice: the provider vouched for her.
    assert await pool.fetchval("SELECT count(*) FROM credentials") == 0


async def test_upstream_users_not_allowed_and_forged_states_are_refused(
    hubs: tuple[Api, str, Api, str], pool: asyncpg.Pool[Any]
) -> None:
    _, a_url, b_api, b_url = hubs
    await set_password(b_api, "carol", "b password")
    browser = Browser(a_url)
    try:
        back = await log_in_upstream(browser, b_url, "carol")
        refused = await browser.get(back.location or "")
        assert refused.status == 403
        assert "User carol is not allowed to log in" in refused.text

        forged = await browser.get("/hub/oauth_callback?code=whatever&state=forged")
        assert forged.status == 403
        assert "OAuth state" in forged.text
        assert (await browser.get("/hub/api/user")).status == 403
    finally:
        await browser.close()
    assert await pool.fetchval("SELECT count(*) FROM users WHERE name = 'carol'") == 0
    assert await pool.fetchval("SELECT count(*) FROM login_sessions") == 0
    reasons = [
        r[0]
        for r in await pool.fetch(
            "SELECT data->>'reason' FROM events WHERE event_type = 'user.login_failed'"
        )
    ]
    assert reasons == ["not_allowed", "not_allowed"]


async def test_the_password_form_is_refused_when_logins_go_upstream(
    hubs: tuple[Api, str, Api, str], pool: asyncpg.Pool[Any]
) -> None:
    _, a_url, _, _ = hubs
    browser = Browser(a_url)
    try:
        form = await browser.get("/hub/login")
        posted = await browser.post(
            "/hub/login",
            data={"_xsrf": browser.xsrf(), "username": "alice", "password": "anything"},
        )
        assert posted.status == 400
        assert "Log in with Hub B" in posted.text
        assert "<form" not in form.text
    finally:
        await browser.close()
    assert await pool.fetchval("SELECT count(*) FROM login_sessions") == 0
