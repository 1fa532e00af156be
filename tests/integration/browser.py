"""A browser for tests: an aiohttp client that keeps cookies, fills forms, follows nothing
by itself, and a running hub built with chosen settings."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import aiohttp
from aiohttp import test_utils

from events import store
from hub import app, bootstrap, context
from hub import settings as hub_settings
from tests.integration.api_fixtures import CONFIG, Api

PASSWORD = "correct horse battery staple"
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


@dataclass
class Page:
    status: int
    text: str
    location: str | None
    response: aiohttp.ClientResponse

    def hidden(self, name: str) -> str:
        """The value of the page's hidden field ``name`` (the first one)."""
        for field, value in _HIDDEN.findall(self.text):
            if field == name:
                return html.unescape(value)
        raise AssertionError(f"no hidden field {name!r} in {self.text[:500]}")

    def fields(self) -> list[tuple[str, str]]:
        """Every hidden field, in order."""
        return [(f, html.unescape(v)) for f, v in _HIDDEN.findall(self.text)]


class Browser:
    """A cookie-keeping HTTP client; ``base`` is ``http://host:port``; ``connector`` chooses
    TLS settings or the local address it connects from."""

    def __init__(
        self,
        base: str,
        headers: dict[str, str] | None = None,
        connector: aiohttp.BaseConnector | None = None,
    ) -> None:
        self.base = base
        self.session = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), headers=headers, connector=connector
        )

    async def close(self) -> None:
        await self.session.close()

    def url(self, path: str) -> str:
        return urljoin(self.base, path)

    async def request(self, method: str, path: str, **kwargs: Any) -> Page:
        kwargs.setdefault("allow_redirects", False)
        async with self.session.request(method, self.url(path), **kwargs) as response:
            text = await response.text()
            return Page(response.status, text, response.headers.get("Location"), response)

    async def get(self, path: str, **kwargs: Any) -> Page:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Page:
        return await self.request("POST", path, **kwargs)

    async def follow(self, page: Page, limit: int = 10) -> Page:
        """Follow redirects (each one a request of this browser) until a page answers."""
        while page.location and limit:
            page = await self.get(urljoin(str(page.response.url), page.location))
            limit -= 1
        return page

    def cookie(self, name: str) -> str | None:
        for morsel in self.session.cookie_jar:
            if morsel.key == name:
                return morsel.value
        return None

    async def login(self, name: str, password: str = PASSWORD, next_url: str = "") -> Page:
        """Fill in and send the login form."""
        form = await self.get("/hub/login" + (f"?next={next_url}" if next_url else ""))
        assert form.status == 200, form.text
        action = "/hub/login" + (f"?next={next_url}" if next_url else "")
        return await self.post(
            action,
            data={"_xsrf": form.hidden("_xsrf"), "username": name, "password": password},
        )

    def xsrf(self) -> str:
        """The token the ``_xsrf`` cookie holds (what a page's forms carry)."""
        signed = self.cookie("_xsrf")
        assert signed is not None, "no _xsrf cookie yet: load a page with a form first"
        from itsdangerous import URLSafeTimedSerializer

        value: str = URLSafeTimedSerializer(
            CONFIG["cookie_secret"].encode(), salt="chronohub-xsrf"
        ).loads(signed)
        return value


@asynccontextmanager
async def running_hub(
    event_store: store.EventStore, *, port: int | None = None, **overrides: Any
) -> AsyncIterator[tuple[Api, str]]:
    """The hub app with ``CONFIG`` and ``overrides``, served on ``port`` (default: a free one)
    of 127.0.0.1. Yields the API helper and the base URL (``http://127.0.0.1:PORT``)."""
    config = hub_settings.Settings(**{**CONFIG, **overrides})
    await bootstrap.reconcile(event_store, config)
    hub = context.Hub(settings=config, store=event_store, database="test")
    server = test_utils.TestServer(app.make_app(hub), host="127.0.0.1", port=port)
    async with test_utils.TestClient(server) as client:
        yield Api(client, event_store), str(client.make_url("")).rstrip("/")


async def set_password(api: Api, name: str, password: str = PASSWORD) -> None:
    """Create ``name`` (if needed) and set their password, as the admin service."""
    await api.call("POST", f"/users/{name}")
    status, body = await api.call("PUT", f"/users/{name}/password", json={"password": password})
    assert status == 204, body
