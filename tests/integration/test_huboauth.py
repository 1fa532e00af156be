"""JupyterHub's own ``HubOAuth`` (the real ``jupyterhub`` package, unmodified) behind
chronohub: a browser with a cookie jar goes from the service to the hub's login, logs in,
approves, comes back through the service's OAuth callback, and the service sees the right
user and scopes; a user without access to the service is refused.

The browser only ever talks to the hub's public address, the built-in proxy: it routes
``/services/whoami/`` to the service (its ``url`` in the services configuration) and the
rest to the hub, so the redirects are all relative, as JupyterHub's are behind its proxy.
The service calls the hub's API directly (``JUPYTERHUB_API_URL``), as in JupyterHub.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from events import store
from hub.proxy import builtin as proxy
from hub.proxy import routes, table
from tests import ports
from tests.integration.api_fixtures import CONFIG, Api
from tests.integration.browser import Browser, Page, running_hub, set_password

pytestmark = [pytest.mark.integration, pytest.mark.interop]

TOKEN = "whoami-huboauth-secret-0123456789abcdef"
SERVICE = Path(__file__).with_name("huboauth_service.py")


@pytest.fixture
async def deployment(event_store: store.EventStore) -> AsyncIterator[tuple[Api, str, str]]:
    """chronohub behind its built-in proxy, and the HubOAuth service registered with it;
    yields (api, public URL, the service's public URL)."""
    port = ports.free_port()
    services = [
        *CONFIG["services"],
        {"name": "whoami", "api_token": TOKEN, "url": f"http://127.0.0.1:{port}"},
    ]
    roles = [
        *CONFIG["roles"],
        {"name": "whoami-users", "scopes": ["access:services!service=whoami"], "users": ["alice"]},
    ]
    async with (
        running_hub(event_store, services=services, roles=roles) as (api, hub),
        proxy.Proxy(hub) as public,
    ):
        host, proxy_port = await public.start("127.0.0.1", 0)

        async def to_proxy(table: list[table.Route]) -> None:
            public.set_routes(table)

        follower = routes.RouteFollower(event_store.pool, [to_proxy], 3600)
        await follower.start()
        public_url = f"http://{host}:{proxy_port}"
        env = {
            **os.environ,
            "JUPYTERHUB_API_TOKEN": TOKEN,
            "JUPYTERHUB_API_URL": hub + "/hub/api",
            "JUPYTERHUB_HOST": "",
            "JUPYTERHUB_BASE_URL": "/",
            "JUPYTERHUB_CLIENT_ID": "service-whoami",
            "JUPYTERHUB_SERVICE_NAME": "whoami",
            "JUPYTERHUB_SERVICE_PREFIX": "/services/whoami/",
            "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}/services/whoami/",
            "JUPYTERHUB_OAUTH_CALLBACK_URL": "/services/whoami/oauth_callback",
            "JUPYTERHUB_OAUTH_ACCESS_SCOPES": json.dumps(["access:services!service=whoami"]),
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(SERVICE), env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            assert line.strip() == b"listening", line + await proc.stdout.read(4000)
            yield api, public_url, public_url + "/services/whoami/"
        finally:
            await follower.stop()
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def sign_in_through_the_service(browser: Browser, service_url: str, name: str) -> Page:
    """From the service to the hub's login and authorize pages; returns the hub's answer
    to the authorize request once signed in (the consent page, or a refusal)."""
    start = await browser.get(service_url)
    assert start.status == 302, start.text
    authorize = start.location or ""
    assert authorize.startswith("/hub/api/oauth2/authorize?")  # through the same address
    assert "client_id=service-whoami" in authorize
    assert "code_challenge_method=S256" in authorize  # HubOAuth 6 always sends PKCE

    to_login = await browser.get(authorize)
    assert to_login.status == 302
    assert (to_login.location or "").startswith("/hub/login?next=")
    form = await browser.get(to_login.location or "")
    signed_in = await browser.post(
        to_login.location or "",
        data={"_xsrf": form.hidden("_xsrf"), "username": name, "password": "huboauth pass"},
    )
    assert signed_in.status == 302, signed_in.text
    back = urlsplit(signed_in.location or "")  # back to the same authorize request
    assert back.path == "/hub/api/oauth2/authorize"
    assert parse_qs(back.query) == parse_qs(urlsplit(authorize).query)
    return await browser.get(signed_in.location or "")


async def test_huboauth_service_sees_the_user_who_logged_in_at_the_hub(
    deployment: tuple[Api, str, str],
) -> None:
    api, hub, service_url = deployment
    await set_password(api, "alice", "huboauth pass")
    browser = Browser(hub)
    try:
        consent = await sign_in_through_the_service(browser, service_url, "alice")
        assert consent.status == 200
        assert "access:services!service=whoami" in consent.text
        approved = await browser.post(
            "/hub/api/oauth2/authorize", data=[*consent.fields(), ("approve", "1")]
        )
        assert approved.status == 302
        callback = approved.location or ""
        assert callback.startswith("/services/whoami/oauth_callback?code=")

        # HubOAuth exchanges the code (client secret = its API token, PKCE verifier), asks
        # whoami with the new token, sets its cookie and sends the browser back.
        back = await browser.get(callback)
        assert back.status == 302, back.text
        assert urlsplit(back.location or "").path == "/services/whoami/"
        assert browser.cookie("service-whoami") is not None

        seen = await browser.get(service_url)
        assert seen.status == 200, seen.text
        user = json.loads(seen.text)
        assert user["kind"] == "user"
        assert user["name"] == "alice"
        assert "access:services!service=whoami" in user["scopes"]
        assert "read:users:name!user=alice" in user["scopes"]
        assert not any(s.startswith(("tokens", "admin")) for s in user["scopes"])
    finally:
        await browser.close()


async def test_a_user_without_access_to_the_service_is_refused(
    deployment: tuple[Api, str, str],
) -> None:
    api, hub, service_url = deployment
    await set_password(api, "bob", "huboauth pass")
    browser = Browser(hub)
    try:
        refused = await sign_in_through_the_service(browser, service_url, "bob")
        assert refused.status == 403
        assert "You do not have permission to access Service whoami" in refused.text
        again = await browser.get(service_url)  # the service still does not know bob
        assert again.status == 302
        assert browser.cookie("service-whoami") is None
    finally:
        await browser.close()
