"""The hub as an OAuth2 provider with two services (``whoami``, which asks for consent, and
``quiet``, which does not), alice signed in, and the steps of an authorization-code + PKCE
flow: shared by the OAuth provider's tests and the token page's."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest

from events import store
from tests.integration.api_fixtures import CONFIG, Api
from tests.integration.browser import Browser, running_hub, set_password

WHOAMI_TOKEN = "whoami-service-secret-0123456789abcdef"
REDIRECT = "/services/whoami/oauth_callback"
SERVICES = [
    *CONFIG["services"],
    {
        "name": "whoami",
        "api_token": WHOAMI_TOKEN,
        "url": "http://127.0.0.1:10101",
        "oauth_client_allowed_scopes": ["read:users:name!user", "read:users:groups!user"],
    },
    {"name": "quiet", "url": "http://127.0.0.1:10102", "oauth_no_confirm": True},
]
ROLES = [
    *CONFIG["roles"],
    {"name": "whoami-users", "scopes": ["access:services!service=whoami"], "users": ["alice"]},
]


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.decode().rstrip("=")


@pytest.fixture
async def hub(event_store: store.EventStore) -> AsyncIterator[tuple[Api, str]]:
    async with running_hub(event_store, services=SERVICES, roles=ROLES) as running:
        yield running


@pytest.fixture
async def alice(hub: tuple[Api, str]) -> AsyncIterator[Browser]:
    api, base = hub
    await set_password(api, "alice")
    await set_password(api, "bob")
    browser = Browser(base)
    assert (await browser.login("alice")).status == 302
    yield browser
    await browser.close()


def authorize_url(client_id: str = "service-whoami", **params: str) -> str:
    query = {"client_id": client_id, "response_type": "code", "state": "st4te", **params}
    return "/hub/api/oauth2/authorize?" + urlencode(query)


async def get_code(browser: Browser, challenge: str, **params: str) -> str:
    """Authorize (approving on the consent page if it is shown); the code from the redirect."""
    page = await browser.get(
        authorize_url(
            redirect_uri=REDIRECT, code_challenge=challenge, code_challenge_method="S256", **params
        )
    )
    if page.status == 200:  # the consent page
        page = await browser.post(
            "/hub/api/oauth2/authorize", data=[*page.fields(), ("approve", "1")]
        )
    assert page.status == 302, page.text
    location = urlsplit(page.location or "")
    assert location.path == REDIRECT
    query = parse_qs(location.query)
    assert query["state"] == ["st4te"]
    return query["code"][0]


async def exchange(browser: Browser, **form: str) -> tuple[int, dict[str, Any]]:
    body = {
        "grant_type": "authorization_code",
        "client_id": "service-whoami",
        "client_secret": WHOAMI_TOKEN,
        "redirect_uri": REDIRECT,
        **form,
    }
    body = {k: v for k, v in body.items() if v is not None}
    # A server-side request, without the browser's cookies.
    async with (
        aiohttp.ClientSession() as server_side,
        server_side.post(browser.url("/hub/api/oauth2/token"), data=body) as response,
    ):
        return response.status, await response.json()
