"""JupyterHub's own authenticator classes, unchanged, logging people in to chronohub through
the adapter: ``PAMAuthenticator`` against real system accounts (made with ``useradd`` and
``chpasswd``, removed at the end; root only), ``GenericOAuthenticator`` against a second
chronohub acting as the OAuth provider (as test_upstream_oauth does for chronohub's own),
``GitHubOAuthenticator`` against the GitHub stand-in of test_github_login.

Each login must show in the event log as one through chronohub's own authenticators does
(``user.created``, ``user.logged_in``, ``user.login_failed``), with ``authenticator =
"jupyterhub"``, and no auth_state secret in it."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from events import models, store
from hub.auth import identity
from hub.auth.authenticators import managed_groups
from hub.auth.authenticators.auth_state import Keeper, parse_keys
from hub.auth.authenticators.jupyterhub_adapter import JupyterHubAuthenticator
from tests import ports
from tests.integration.api_fixtures import Api
from tests.integration.browser import Browser, running_hub, set_password
from tests.integration.test_github_login import CLIENT_ID, CLIENT_SECRET, GitHub, github
from tests.integration.test_upstream_oauth import (  # the second chronohub's database
    HUB_A_SECRET,
    log_in_upstream,
    provider_config,
    provider_store,
)

pytestmark = pytest.mark.integration

__all__ = ["github", "provider_store"]  # fixtures, used by name
CRYPT_KEY = secrets.token_hex(32)


async def login_events(pool: asyncpg.Pool[Any], names: list[str]) -> list[tuple[Any, ...]]:
    """(type, name, authenticator, reason) of the login events of ``names`` (and of the
    failed logins of no user), in order; the configuration's own users are left out."""
    rows = await pool.fetch(
        "SELECT event_type, data FROM events WHERE event_type = ANY($1::text[])"
        " ORDER BY global_position",
        ["user.created", "user.logged_in", "user.login_failed"],
    )
    found = [{"type": r["event_type"], **json.loads(r["data"])} for r in rows]
    return [
        (e["type"], e.get("name"), e.get("authenticator"), e.get("reason"), e.get("admin"))
        for e in found
        if e.get("name") in names or e["type"] == "user.login_failed"
    ]


# --- PAM, real system accounts ---


@pytest.fixture
def accounts() -> Iterator[dict[str, str]]:
    """Three throwaway system accounts with passwords: name -> password."""
    if os.geteuid() != 0:
        pytest.skip("PAM logins need system accounts: useradd and chpasswd need root")
    if shutil.which("useradd") is None or shutil.which("chpasswd") is None:
        pytest.skip("useradd/chpasswd are not installed")
    made = {f"pam{secrets.token_hex(3)}{role}": secrets.token_urlsafe(12) for role in "abc"}
    try:
        for name, password in made.items():
            subprocess.run(
                ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True
            )
            subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)
        yield made
    finally:
        for name in made:
            subprocess.run(["userdel", name], check=False, capture_output=True)


async def log_in(browser: Browser, name: str, password: str) -> Any:
    await browser.get("/hub/login")
    return await browser.post(
        "/hub/login", data={"_xsrf": browser.xsrf(), "username": name, "password": password}
    )


async def test_pam_logs_in_system_accounts_and_honours_admin_and_blocked_users(
    event_store: store.EventStore, pool: asyncpg.Pool[Any], accounts: dict[str, str]
) -> None:
    admin, plain, blocked = accounts
    config = {
        "Authenticator": {"admin_users": [admin], "blocked_users": [blocked]},
        "PAMAuthenticator": {"allowed_users": [plain, blocked]},
    }
    async with running_hub(event_store, authenticator_class="pam", authenticator_config=config) as (
        _,
        url,
    ):
        for name, is_admin in ((admin, True), (plain, False)):
            browser = Browser(url)
            try:
                form = await browser.get("/hub/login")
                assert 'name="password"' in form.text
                done = await log_in(browser, name, accounts[name])
                assert done.status == 302, done.text
                me = await (await browser.get("/hub/api/user")).response.json()
                assert (me["name"], me["admin"]) == (name, is_admin)
            finally:
                await browser.close()
        browser = Browser(url)
        try:
            wrong = await log_in(browser, plain, accounts[plain] + "x")
            assert wrong.status == 403
            assert "Invalid username or password" in wrong.text
            refused = await log_in(browser, blocked, accounts[blocked])
            assert refused.status == 403
            assert (await browser.get("/hub/api/user")).status == 403
        finally:
            await browser.close()
    assert await login_events(pool, list(accounts)) == [
        ("user.created", admin, None, None, True),
        ("user.logged_in", admin, "jupyterhub", None, None),
        ("user.created", plain, None, None, False),
        ("user.logged_in", plain, "jupyterhub", None, None),
        ("user.login_failed", plain, "jupyterhub", "bad_password", None),
        ("user.login_failed", None, "jupyterhub", "unknown_user", None),
    ]
    assert await pool.fetchval("SELECT count(*) FROM users WHERE name = $1", blocked) == 0
    # PAM keeps the passwords: chronohub stores none, and none reaches the log
    assert await pool.fetchval("SELECT count(*) FROM credentials") == 0
    log_text = await pool.fetchval("SELECT string_agg(data::text, ' ') FROM events")
    assert all(password not in log_text for password in accounts.values())


# --- GenericOAuthenticator against a second chronohub ---


@pytest.fixture
async def hubs(
    event_store: store.EventStore, provider_store: store.EventStore
) -> AsyncIterator[tuple[str, Api, str, Api]]:
    """(hub A's URL, provider B's API, B's URL as the browser reaches it, A's API); A logs
    in through GenericOAuthenticator, B knows A as an OAuth client."""
    a_port = ports.free_port()
    a_url = f"http://127.0.0.1:{a_port}"
    provider = provider_config(a_url, ["alice", "carol", "dave"])
    async with running_hub(provider_store, **provider) as (b_api, b_url):
        b_port = urlsplit(b_url).port
        generic = {
            "authorize_url": f"http://localhost:{b_port}/hub/api/oauth2/authorize",
            "token_url": f"{b_url}/hub/api/oauth2/token",
            "userdata_url": f"{b_url}/hub/api/user",
            "client_id": "service-hub-a",
            "client_secret": HUB_A_SECRET,
            "username_claim": "name",
            "login_service": "Hub B",
            "allowed_users": ["alice", "carol"],
            "admin_users": ["dave"],
            "blocked_users": ["carol"],
            "enable_auth_state": True,
            "manage_groups": True,  # B's /hub/api/user lists the user's groups
        }
        async with running_hub(
            event_store,
            port=a_port,
            authenticator_class="oauthenticator.generic.GenericOAuthenticator",
            authenticator_config={"GenericOAuthenticator": generic},
            crypt_key=CRYPT_KEY,
        ) as (a_api, a_base):
            assert a_base == a_url
            yield a_url, b_api, f"http://localhost:{b_port}", a_api


async def test_generic_oauthenticator_logs_in_through_a_second_chronohub(
    hubs: tuple[str, Api, str, Api], pool: asyncpg.Pool[Any], event_store: store.EventStore
) -> None:
    a_url, b_api, b_url, a_api = hubs
    for name in ("alice", "carol", "dave"):
        await set_password(b_api, name, "b password")
    status, _ = await b_api.call("POST", "/groups/physics", json={"users": ["alice"]})
    assert status == 201
    outcomes: dict[str, int] = {}
    for name in ("alice", "carol", "dave"):
        browser = Browser(a_url)
        try:
            back = await log_in_upstream(browser, b_url, name)
            assert parse_qs(urlsplit(back.location or "").query)["state"]
            home = await browser.get(back.location or "")
            outcomes[name] = home.status
            if home.status == 302:
                assert home.location == "/hub/home"
                me = await (await browser.get("/hub/api/user")).response.json()
                assert (me["name"], me["admin"]) == (name, name == "dave")
            else:
                assert (await browser.get("/hub/api/user")).status == 403
        finally:
            await browser.close()
    assert outcomes == {"alice": 302, "carol": 403, "dave": 302}
    assert await login_events(pool, ["alice", "carol", "dave"]) == [
        ("user.created", "alice", None, None, False),
        ("user.logged_in", "alice", "jupyterhub", None, None),
        ("user.login_failed", None, "jupyterhub", "not_allowed", None),
        ("user.created", "dave", None, None, True),
        ("user.logged_in", "dave", "jupyterhub", None, None),
    ]
    # manage_groups: alice's groups at B became hers at A (created, as group events)
    groups = await pool.fetch(
        "SELECT g.name, u.name AS member FROM groups g"
        " JOIN group_members m USING (group_id) JOIN users u USING (user_id)"
    )
    assert [(r["name"], r["member"]) for r in groups] == [("physics", "alice")]
    types = await pool.fetch(
        "SELECT event_type FROM events WHERE stream_id LIKE 'group-%' ORDER BY global_position"
    )
    assert [r[0] for r in types] == ["group.created", "group.members_added"]
    # auth_state (B's access token among it) is kept encrypted, outside the log
    rows = await pool.fetch(
        "SELECT u.name, s.encrypted FROM auth_states s JOIN users u USING (user_id) ORDER BY u.name"
    )
    assert [r["name"] for r in rows] == ["alice", "dave"]
    state = Keeper(parse_keys(CRYPT_KEY)).decrypt(bytes(rows[0]["encrypted"]))
    token = state["access_token"]
    assert token
    assert state["oauth_user"]["name"] == "alice"
    assert token.encode() not in bytes(rows[0]["encrypted"])
    log_text = await pool.fetchval(
        "SELECT string_agg(data::text || metadata::text, ' ') FROM events"
    )
    assert token not in log_text

    # refresh_user: the class reads B's user info again with the kept access token; without
    # an auth_state it asks for a new login, which counts for the user's own browser session
    # (strict), not for a token's or another user's request (JupyterHub's refresh_auth)
    adapter = a_api.client.app[identity.AUTH].authenticator
    assert isinstance(adapter, JupyterHubAuthenticator)
    assert adapter.overrides_refresh
    alice: Any = await pool.fetchrow("SELECT user_id, name FROM users WHERE name = 'alice'")
    assert await adapter.refresh(alice["user_id"], "alice", force=True, strict=True) is True
    async with pool.acquire() as conn:
        assert (await adapter.auth_state(conn, alice["user_id"]))["access_token"] == token
        await conn.execute("DELETE FROM auth_states WHERE user_id = $1", alice["user_id"])
    assert await adapter.refresh(alice["user_id"], "alice", force=True, strict=True) is False
    assert await adapter.refresh(alice["user_id"], "alice", force=True, strict=False) is True
    # a later login whose result names other groups: left and joined, as group events
    async with event_store.session() as session:
        await managed_groups.sync(
            session, alice["user_id"], "alice", ["chemistry"], models.Metadata()
        )
    groups = await pool.fetch(
        "SELECT g.name, u.name AS member FROM groups g"
        " LEFT JOIN group_members m USING (group_id) LEFT JOIN users u USING (user_id)"
        " ORDER BY g.name"
    )
    assert [(r["name"], r["member"]) for r in groups] == [
        ("chemistry", "alice"),
        ("physics", None),
    ]


async def test_generic_oauthenticator_admin_groups_promote_and_demote_at_login(
    event_store: store.EventStore, provider_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    """OAuthenticator's admin_groups answer admin False for a user not in them: JupyterHub
    demotes a previous admin at that login, and so does chronohub (user.admin_changed)."""
    a_port = ports.free_port()
    a_url = f"http://127.0.0.1:{a_port}"
    async with running_hub(provider_store, **provider_config(a_url, ["erin"])) as (b_api, b_url):
        b_port = urlsplit(b_url).port
        generic = {
            "authorize_url": f"http://localhost:{b_port}/hub/api/oauth2/authorize",
            "token_url": f"{b_url}/hub/api/oauth2/token",
            "userdata_url": f"{b_url}/hub/api/user",
            "client_id": "service-hub-a",
            "client_secret": HUB_A_SECRET,
            "username_claim": "name",
            "login_service": "Hub B",
            "allow_all": True,
            "admin_groups": ["wizards"],  # B's /hub/api/user lists the user's groups
            "manage_groups": True,  # which admin_groups needs
        }
        async with running_hub(
            event_store,
            port=a_port,
            authenticator_class="generic-oauth",
            authenticator_config={"GenericOAuthenticator": generic},
        ):
            await set_password(b_api, "erin", "b password")
            status, _ = await b_api.call("POST", "/groups/wizards", json={"users": ["erin"]})
            assert status == 201
            admin_at_each_login = []
            for _ in range(2):
                browser = Browser(a_url)
                try:
                    back = await log_in_upstream(browser, f"http://localhost:{b_port}", "erin")
                    assert (await browser.get(back.location or "")).status == 302
                    me = await (await browser.get("/hub/api/user")).response.json()
                    admin_at_each_login.append(me["admin"])
                finally:
                    await browser.close()
                status, _ = await b_api.call(
                    "DELETE", "/groups/wizards/users", json={"users": ["erin"]}
                )
                assert status == 200
    assert admin_at_each_login == [True, False]
    rows = await pool.fetch(
        "SELECT event_type, data, actor FROM events"
        " WHERE event_type IN ('user.created', 'user.admin_changed') ORDER BY global_position"
    )
    found = [(r["event_type"], json.loads(r["data"])["admin"], r["actor"]) for r in rows]
    assert found[-2:] == [
        ("user.created", True, "system:login"),
        ("user.admin_changed", False, "system:login"),
    ]


# --- GitHubOAuthenticator against the GitHub stand-in ---


async def test_github_oauthenticator_honours_allowed_organizations(
    event_store: store.EventStore, github: tuple[GitHub, str], pool: asyncpg.Pool[Any]
) -> None:
    fake, gh = github
    config = {
        "GitHubOAuthenticator": {
            "github_url": gh,
            "github_api": gh,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "scope": ["read:org"],
            "allowed_organizations": ["jupyter"],
        }
    }
    async with running_hub(
        event_store, authenticator_class="github", authenticator_config=config
    ) as (_, url):
        outcomes = {}
        for login in ("Octo", "Mona"):
            fake.next_login = login
            browser = Browser(url)
            try:
                assert "Sign in with GitHub" in (await browser.get("/hub/login")).text
                to_github = await browser.get("/hub/oauth_login?next=/hub/home")
                assert (to_github.location or "").startswith(gh + "/login/oauth/authorize?")
                back = await browser.get(to_github.location or "")
                done = await browser.get(back.location or "")
                outcomes[login] = (done.status, done.location)
            finally:
                await browser.close()
    assert outcomes == {"Octo": (302, "/hub/home"), "Mona": (403, None)}
    assert await login_events(pool, ["octo", "mona"]) == [
        ("user.created", "octo", None, None, False),
        ("user.logged_in", "octo", "jupyterhub", None, None),
        ("user.login_failed", None, "jupyterhub", "not_allowed", None),
    ]
