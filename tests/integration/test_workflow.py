"""A full workflow through the API, then the audit guarantees over what it left behind:

* every projection, rebuilt from the log, equals the live tables (`chronohub projections
  verify`, exit 0);
* no secret handed out during the workflow appears anywhere in the log.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import asyncpg
import pytest

from hub.auth.oauth import clients as oauth_clients
from projections import catalog
from tests.integration.api_fixtures import CULLER_TOKEN, SERVICE_TOKEN, Api
from tests.integration.browser import Browser, set_password
from tests.integration.spawn_fixtures import StartHub

pytestmark = pytest.mark.integration


async def run_workflow(api: Api) -> list[str]:
    """Users, groups, roles, tokens and their revocation; returns every secret handed out."""
    secrets = [SERVICE_TOKEN, CULLER_TOKEN]
    status, _ = await api.call("POST", "/users", json={"usernames": [f"w{i}" for i in range(6)]})
    assert status == 201
    await api.call("PATCH", "/users/w0", json={"name": "w0-renamed", "admin": True})
    await api.call("POST", "/groups", json={"groups": ["course", "lab"], "users": ["w1", "w2"]})
    await api.call("POST", "/groups/lab/users", json={"users": ["w3"]})
    await api.call("DELETE", "/groups/course/users", json={"users": ["w1"]})
    await api.call("PUT", "/groups/lab/properties", json={"quota": 5})
    for name in ("w1", "w2", "w3"):
        secrets.append(await api.user_token(name, note=f"{name}'s laptop", expires_in=600))
    status, narrow = await api.call(
        "POST", "/users/w2/tokens", token=secrets[-2], json={"scopes": ["read:users!user=w2"]}
    )
    assert status == 201
    secrets.append(narrow["token"])
    status, listed = await api.call("GET", "/users/w1/tokens")
    assert status == 200, listed
    await api.call("DELETE", f"/users/w1/tokens/{listed['api_tokens'][0]['id']}")
    await api.call("POST", "/users/w4/activity", json={"last_activity": "2026-11-24T08:00:00Z"})
    await api.call("DELETE", "/users/w5")
    await api.call("DELETE", "/groups/course")
    return secrets


async def run_login_workflow(api: Api) -> list[str]:
    """Passwords, a browser session, an OAuth code flow; returns every secret handed out:
    passwords, cookie values, the OAuth code, its PKCE verifier and the access token."""
    import base64
    import hashlib
    from urllib.parse import parse_qs, urlencode, urlsplit

    password, changed = "w1's first password", "w1's second password"
    await set_password(api, "w1", password)
    server = await api.call("POST", "/users/w1/tokens", json={"note": "Server at /user/w1/"})
    client_id = await oauth_clients.register_server_client(
        api.store, user="w1", server_name="", redirect_uri=None, token_id=server[1]["id"]
    )
    browser = Browser(str(api.client.make_url("")).rstrip("/"))
    try:
        assert (await browser.login("w1", password)).status == 302
        form = await browser.get("/hub/password")
        await browser.post(
            "/hub/password",
            data={"_xsrf": form.hidden("_xsrf"), "current_password": password, "password": changed},
        )
        verifier = "pkce-verifier-" + "0123456789abcdef" * 3
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        query = {
            "client_id": client_id,
            "response_type": "code",
            "state": "s",
            "code_challenge": challenge.decode().rstrip("="),
            "code_challenge_method": "S256",
        }
        page = await browser.get("/hub/api/oauth2/authorize?" + urlencode(query))
        code = parse_qs(urlsplit(page.location or "").query)["code"][0]
        async with browser.session.post(
            browser.url("/hub/api/oauth2/token"),
            data={
                "grant_type": "authorization_code",
                "code": code,
                "code_verifier": verifier,
                "client_id": client_id,
                "client_secret": server[1]["token"],
                "redirect_uri": "/user/w1/oauth_callback",
            },
        ) as response:
            assert response.status == 200
            access_token = (await response.json())["access_token"]
        cookies = [m.value for m in browser.session.cookie_jar]
        logout = await browser.get("/hub/logout")
        await browser.post("/hub/logout", data={"_xsrf": logout.hidden("_xsrf")})
    finally:
        await browser.close()
    assert len(cookies) == 2  # the login cookie and the _xsrf cookie
    return [password, changed, server[1]["token"], code, verifier, access_token, *cookies]


async def verify_projections(db_url: str) -> None:
    """`chronohub projections verify` on the test database: exit 0, every projection identical."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", "projections", "verify",
        env={**os.environ, "CHRONOHUB_DATABASE_URL": db_url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, out.decode()
    for projection in catalog.ALL:
        assert f"{projection.name}: identical" in out.decode()


async def test_full_workflow_then_verify_and_search_the_log_for_secrets(
    api: Api, db_url: str, pool: asyncpg.Pool[Any]
) -> None:
    api_secrets = await run_workflow(api)
    login_secrets = await run_login_workflow(api)
    secrets = api_secrets + login_secrets

    await verify_projections(db_url)

    # Every column of every event, as an audit export would carry it.
    log = "\n".join(r[0] for r in await pool.fetch("SELECT row_to_json(e)::text FROM events e"))
    types = {r[0] for r in await pool.fetch("SELECT DISTINCT event_type FROM events")}
    assert {"token.issued", "token.revoked", "group.members_removed", "user.renamed"} <= types
    assert {
        "user.password_set",
        "user.logged_in",
        "user.logged_out",
        "oauth_client.registered",
        "oauth.code_issued",
        "oauth.code_exchanged",
    } <= types
    for secret in secrets:
        assert secret not in log
    for generated in secrets[2:]:  # tokens, codes, cookies: random, and long enough
        assert generated[:8] not in log  # not even a recognisable piece of one
    # Cookie values are signed secrets, not the secrets themselves; neither is in the log.
    assert all(len(secret) >= 12 for secret in login_secrets)
    # The hashes are outside the log, and a token still works: they are where auth looks.
    assert await pool.fetchval("SELECT count(*) FROM token_secrets") >= len(api_secrets) - 1
    assert (await api.call("GET", "/user", token=api_secrets[-1]))[0] == 200


async def test_servers_workflow_then_verify_and_search_the_log_for_secrets(
    spawn_hub: StartHub, db_url: str, pool: asyncpg.Pool[Any]
) -> None:
    """Spawns, named servers, a stop and a failure: the servers and routes read models rebuild
    identically, and no server's API token (its OAuth client secret too) is in the log."""
    hub = await spawn_hub("serve", named_server_limit_per_user=2)
    token = await hub.user("sw")
    secrets = [token]
    for path in ("/users/sw/server", "/users/sw/servers/lab"):
        assert (await hub.call("POST", path, token=token))[0] == 201
        # The fake server writes the environment it was given into the user's directory.
        env = json.loads((hub.data_dir / "users" / "sw" / "env.json").read_text())
        secrets.append(env["JUPYTERHUB_API_TOKEN"])
    assert len(set(secrets)) == 3
    assert (await hub.call("DELETE", "/users/sw/server", token=token))[0] in (202, 204)
    failing = await spawn_hub("exit")
    other = await failing.user("sx")
    assert (await failing.call("POST", "/users/sx/server", token=other))[0] == 500
    secrets.append(other)

    await verify_projections(db_url)
    types = {r[0] for r in await pool.fetch("SELECT DISTINCT event_type FROM events")}
    assert {"server.ready", "server.stopped", "server.failed"} <= types
    log = "\n".join(r[0] for r in await pool.fetch("SELECT row_to_json(e)::text FROM events e"))
    for secret in secrets:
        assert secret not in log
        assert secret[:8] not in log
