"""Logging in with a browser: the login and logout pages, the signed session cookie, XSRF,
``next`` redirects, lockout and rate limits, passwords and signups, the dummy authenticator.

Every refusal is checked for its status, its message, and that nothing was granted: no
session row, no token, no user."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from events import store
from tests.integration.api_fixtures import Api
from tests.integration.browser import PASSWORD, Browser, running_hub, set_password

pytestmark = pytest.mark.integration


@pytest.fixture
async def hub(event_store: store.EventStore) -> AsyncIterator[tuple[Api, str]]:
    async with running_hub(
        event_store, login_lockout_failures=3, login_address_max_failures=5, allow_signup=True
    ) as running:
        yield running


@pytest.fixture
async def browser(hub: tuple[Api, str]) -> AsyncIterator[Browser]:
    b = Browser(hub[1])
    yield b
    await b.close()


async def sessions_of(pool: asyncpg.Pool[Any], name: str) -> int:
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM login_sessions s JOIN users u USING (user_id) WHERE u.name = $1",
            name,
        )
    )


async def events_of(pool: asyncpg.Pool[Any], event_type: str) -> list[dict[str, Any]]:
    import json

    rows = await pool.fetch(
        "SELECT stream_id, data, metadata FROM events"
        " WHERE event_type = $1 ORDER BY global_position",
        event_type,
    )
    return [
        {"stream": r["stream_id"], **json.loads(r["data"]), "meta": json.loads(r["metadata"])}
        for r in rows
    ]


async def test_login_sets_a_signed_httponly_samesite_cookie_that_authenticates_the_api(
    hub: tuple[Api, str], browser: Browser, pool: asyncpg.Pool[Any]
) -> None:
    api, _ = hub
    await set_password(api, "alice")
    form = await browser.get("/hub/login")
    assert form.status == 200
    assert "<form" in form.text
    assert 'name="_xsrf"' in form.text

    page = await browser.login("alice")
    assert page.status == 302
    assert page.location == "/hub/home"
    cookie = page.response.headers.getall("Set-Cookie")
    login_cookie = next(c for c in cookie if c.startswith("jupyterhub-hub-login="))
    assert "HttpOnly" in login_cookie
    assert "SameSite=Lax" in login_cookie
    assert "Path=/hub/" in login_cookie

    home = await browser.get("/hub/home")
    assert home.status == 200
    assert 'id="user">alice<' in home.text
    whoami = await browser.get("/hub/api/user")
    assert whoami.status == 200
    me = await whoami.response.json()
    assert me["name"] == "alice"
    assert "read:users!user=alice" in me["scopes"]
    assert await sessions_of(pool, "alice") == 1
    [logged_in] = await events_of(pool, "user.logged_in")
    assert logged_in["name"] == "alice"
    assert logged_in["authenticator"] == "native"
    assert logged_in["meta"]["actor"] == {"kind": "user", "name": "alice"}
    [password_set] = await events_of(pool, "user.password_set")
    assert password_set["by"] == "admin"
    assert PASSWORD not in str(password_set)


async def test_a_signed_in_browser_counts_as_its_users_activity(
    hub: tuple[Api, str], browser: Browser
) -> None:
    """As in JupyterHub, a user using the hub in a browser is active (the idle culler's
    ``--cull-users`` must not remove them); the first request writes it, later ones within
    the activity resolution do not write again."""
    api, _ = hub
    await set_password(api, "alice")
    status, before = await api.call("GET", "/users/alice")
    assert status == 200
    assert before["last_activity"] is None
    assert (await browser.login("alice")).status == 302
    assert (await browser.get("/hub/home")).status == 200
    status, after = await api.call("GET", "/users/alice")
    assert status == 200, after
    assert after["last_activity"] is not None
    assert after["last_activity"] >= after["created"]
    assert (await browser.get("/hub/home")).status == 200
    status, again = await api.call("GET", "/users/alice")
    assert status == 200, again
    assert again["last_activity"] == after["last_activity"]


async def test_wrong_password_and_unknown_user_are_refused_alike_and_logged(
    hub: tuple[Api, str], browser: Browser, pool: asyncpg.Pool[Any]
) -> None:
    api, _ = hub
    await set_password(api, "alice")
    wrong = await browser.login("alice", "not the password")
    unknown = await browser.login("nobody", "not the password")
    for page in (wrong, unknown):
        assert page.status == 403
        assert "Invalid username or password" in page.text
    assert browser.cookie("jupyterhub-hub-login") is None
    assert await sessions_of(pool, "alice") == 0
    assert await pool.fetchval("SELECT count(*) FROM login_sessions") == 0
    failed = await events_of(pool, "user.login_failed")
    assert [(e["reason"], e["name"], e["stream"].split("-")[0]) for e in failed] == [
        ("bad_password", "alice", "user"),
        ("unknown_user", None, "login"),  # the name typed is not logged: it may be a password
    ]
    log = "\n".join(r[0] for r in await pool.fetch("SELECT row_to_json(e)::text FROM events e"))
    assert "not the password" not in log
    assert "nobody" not in log


async def test_login_without_or_with_a_wrong_xsrf_token_is_refused(
    hub: tuple[Api, str], browser: Browser, pool: asyncpg.Pool[Any]
) -> None:
    api, _ = hub
    await set_password(api, "alice")
    await browser.get("/hub/login")
    missing = await browser.post("/hub/login", data={"username": "alice", "password": PASSWORD})
    assert missing.status == 403
    assert "&#39;_xsrf&#39; argument missing from POST" in missing.text
    wrong = await browser.post(
        "/hub/login", data={"_xsrf": "forged", "username": "alice", "password": PASSWORD}
    )
    assert wrong.status == 403
    assert "XSRF cookie does not match POST argument" in wrong.text
    assert await pool.fetchval("SELECT count(*) FROM login_sessions") == 0
    assert await events_of(pool, "user.logged_in") == []


async def test_a_tampered_or_forged_cookie_is_refused(
    hub: tuple[Api, str], browser: Browser, pool: asyncpg.Pool[Any]
) -> None:
    api, base = hub
    await set_password(api, "alice")
    await browser.login("alice")
    good = browser.cookie("jupyterhub-hub-login")
    assert good is not None
    flipped = "A" if good[-5] != "A" else "B"  # not the last character: padding bits
    tampered = good[:-5] + flipped + good[-4:]
    for value in (tampered, "forged-value", good.split(".")[0]):
        other = Browser(base)
        try:
            other.session.cookie_jar.update_cookies({"jupyterhub-hub-login": value})
            page = await other.get("/hub/api/user")
            assert page.status == 403
            assert (await page.response.json())["message"] == "Missing or invalid credentials."
            home = await other.get("/hub/home")
            assert home.status == 302
            assert home.location.startswith("/hub/login")
        finally:
            await other.close()


async def test_cookie_authenticated_api_changes_need_the_xsrf_token(
    hub: tuple[Api, str], browser: Browser, pool: asyncpg.Pool[Any]
) -> None:
    api, _ = hub
    await set_password(api, "admin")
    await browser.login("admin")
    refused = await browser.post("/hub/api/users/newcomer", json={})
    assert refused.status == 403
    assert (await refused.response.json())["message"] == "'_xsrf' argument missing from POST"
    forged = await browser.post("/hub/api/users/newcomer", headers={"X-XSRFToken": "forged"})
    assert forged.status == 403
    assert await pool.fetchval("SELECT count(*) FROM users WHERE name = 'newcomer'") == 0

    accepted = await browser.post(
        "/hub/api/users/newcomer", headers={"X-XSRFToken": browser.xsrf()}
    )
    assert accepted.status == 201, accepted.text
    # Reading needs no token; a token-authenticated request never needs one.
    assert (await browser.get("/hub/api/users/newcomer")).status == 200
    status, _ = await api.call("POST", "/users/other")
    assert status == 201


async def test_logout_ends_the_session_for_good(
    hub: tuple[Api, str], browser: Browser, pool: asyncpg.Pool[Any]
) -> None:
    api, base = hub
    await set_password(api, "alice")
    await browser.login("alice")
    cookie = browser.cookie("jupyterhub-hub-login")
    page = await browser.get("/hub/logout")
    assert page.status == 200
    assert "<form" in page.text
    no_xsrf = await browser.post("/hub/logout")
    assert no_xsrf.status == 403
    assert await sessions_of(pool, "alice") == 1

    out = await browser.post("/hub/logout", data={"_xsrf": page.hidden("_xsrf")})
    assert out.status == 302
    assert out.location == "/hub/login"
    assert await sessions_of(pool, "alice") == 0
    [logged_out] = await events_of(pool, "user.logged_out")
    assert logged_out["name"] == "alice"
    replay = Browser(base)  # the old cookie, kept by someone, no longer works
    try:
        replay.session.cookie_jar.update_cookies({"jupyterhub-hub-login": cookie or ""})
        assert (await replay.get("/hub/api/user")).status == 403
    finally:
        await replay.close()


@pytest.mark.parametrize(
    ("next_url", "lands"),
    [
        ("/hub/api/users/alice", "/hub/api/users/alice"),
        ("/user/alice/lab?x=1", "/user/alice/lab?x=1"),
        ("//evil.example/steal", "/hub/home"),
        ("https://evil.example/", "/hub/home"),
        ("/\\evil.example", "/hub/home"),
        ("javascript:alert(1)", "/hub/home"),
    ],
)
async def test_next_redirects_stay_on_this_hub(
    hub: tuple[Api, str], browser: Browser, next_url: str, lands: str
) -> None:
    from urllib.parse import quote

    api, _ = hub
    await set_password(api, "alice")
    page = await browser.login("alice", next_url=quote(next_url, safe=""))
    assert page.status == 302
    assert page.location == lands


async def test_repeated_failures_lock_the_user_out_even_with_the_right_password(
    hub: tuple[Api, str], browser: Browser, pool: asyncpg.Pool[Any]
) -> None:
    api, _ = hub
    await set_password(api, "alice")
    for _ in range(2):
        assert (await browser.login("alice", "wrong password")).status == 403
    third = await browser.login("alice", "wrong password")
    assert third.status == 403
    assert "the account is locked for 300 seconds" in third.text
    locked = await browser.login("alice")  # the right password, too late
    assert locked.status == 429
    assert "Too many failed logins for this user" in locked.text
    assert int(locked.response.headers["Retry-After"]) > 0
    assert await sessions_of(pool, "alice") == 0
    assert len(await events_of(pool, "user.login_failed")) == 3  # refusals while locked: none
    # Another user is not affected.
    await set_password(api, "bob")
    assert (await browser.login("bob")).status == 302


async def test_failures_from_one_address_are_rate_limited(
    hub: tuple[Api, str], browser: Browser, pool: asyncpg.Pool[Any]
) -> None:
    api, _ = hub
    await set_password(api, "carol")
    for i in range(5):  # five different names: no user lockout, one address
        assert (await browser.login(f"guess{i}", "wrong password")).status == 403
    limited = await browser.login("carol")
    assert limited.status == 429
    assert "Too many failed logins from this address" in limited.text
    assert await sessions_of(pool, "carol") == 0


async def test_passwords_set_by_admin_and_changed_by_their_owner(
    hub: tuple[Api, str], browser: Browser, pool: asyncpg.Pool[Any]
) -> None:
    api, _ = hub
    await set_password(api, "alice")
    status, body = await api.call("PUT", "/users/alice/password", json={"password": "short"})
    assert status == 400
    assert body["message"] == "the password must be at least 8 characters long"
    status, body = await api.call("PUT", "/users/ghost/password", json={"password": PASSWORD})
    assert status == 404
    alice_token = await api.user_token("alice")
    status, body = await api.call(
        "PUT", "/users/alice/password", token=alice_token, json={"password": "a new password"}
    )
    assert status == 400
    assert "current_password is required" in body["message"]
    status, body = await api.call(
        "PUT",
        "/users/alice/password",
        token=alice_token,
        json={"password": "a new password", "current_password": "wrong"},
    )
    assert status == 403
    assert body["message"] == "the current password is wrong"
    status, body = await api.call(
        "PUT", "/users/admin/password", token=alice_token, json={"password": "a new password"}
    )
    assert status in (403, 404)  # not hers to change

    await browser.login("alice")
    form = await browser.get("/hub/password")
    changed = await browser.post(
        "/hub/password",
        data={
            "_xsrf": form.hidden("_xsrf"),
            "current_password": PASSWORD,
            "password": "a brand new password",
        },
    )
    assert changed.status == 200
    assert "Your password was changed" in changed.text
    fresh = Browser(browser.base)
    try:
        assert (await fresh.login("alice")).status == 403
        assert (await fresh.login("alice", "a brand new password")).status == 302
    finally:
        await fresh.close()
    assert [e["by"] for e in await events_of(pool, "user.password_set")] == ["admin", "self"]


async def test_signup_waits_for_an_admin(
    hub: tuple[Api, str], browser: Browser, pool: asyncpg.Pool[Any]
) -> None:
    api, _ = hub
    form = await browser.get("/hub/signup")
    assert form.status == 200
    sent = await browser.post(
        "/hub/signup",
        data={"_xsrf": form.hidden("_xsrf"), "username": "Dora", "password": PASSWORD},
    )
    assert sent.status == 200
    assert "an administrator will look at your request" in sent.text
    again = await browser.post(
        "/hub/signup",
        data={"_xsrf": form.hidden("_xsrf"), "username": "dora", "password": PASSWORD},
    )
    assert again.status == 409
    assert "already asked for" in again.text
    bad = await browser.post(
        "/hub/signup", data={"_xsrf": form.hidden("_xsrf"), "username": "a/b", "password": PASSWORD}
    )
    assert bad.status == 400
    assert "invalid username" in bad.text
    assert (await browser.login("dora")).status == 403  # not before approval

    status, pending = await api.call("GET", "/signups")
    assert status == 200
    assert [p["name"] for p in pending] == ["dora"]
    status, user = await api.call("POST", "/signups/dora")
    assert status == 201
    assert user["name"] == "dora"
    assert (await api.call("POST", "/signups/dora"))[0] == 404
    assert (await browser.login("dora")).status == 302
    assert await pool.fetchval("SELECT count(*) FROM signup_credentials") == 0

    other = await browser.get("/hub/signup")
    await browser.post(
        "/hub/signup",
        data={"_xsrf": other.hidden("_xsrf"), "username": "eve", "password": PASSWORD},
    )
    assert (await api.call("DELETE", "/signups/eve"))[0] == 204
    assert await pool.fetchval("SELECT count(*) FROM users WHERE name = 'eve'") == 0
    assert await pool.fetchval("SELECT count(*) FROM signup_credentials") == 0
    types = [
        r[0] for r in await pool.fetch("SELECT event_type FROM events ORDER BY global_position")
    ]
    assert types.count("signup.requested") == 2
    assert "signup.approved" in types
    assert "signup.rejected" in types


async def test_signup_is_closed_unless_allowed(event_store: store.EventStore) -> None:
    async with running_hub(event_store) as (_, base):
        b = Browser(base)
        try:
            page = await b.get("/hub/signup")
            assert page.status == 404
            assert "Signing up is not open" in page.text
            posted = await b.post("/hub/signup", data={"username": "x", "password": PASSWORD})
            assert posted.status == 404
        finally:
            await b.close()


async def test_the_dummy_authenticator_lets_anyone_in_only_when_enabled(
    event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    async with running_hub(
        event_store,
        authenticator="dummy",
        dummy_authenticator_enabled=True,
        dummy_password="shared secret",
    ) as (_, base):
        b = Browser(base)
        try:
            assert (await b.login("visitor", "wrong")).status == 403
            assert (await b.login("visitor", "shared secret")).status == 302
            me = await (await b.get("/hub/api/user")).response.json()
            assert me["name"] == "visitor"
        finally:
            await b.close()
    [event] = await events_of(pool, "user.logged_in")
    assert event["authenticator"] == "dummy"


async def test_a_new_password_signs_out_every_other_session(
    hub: tuple[Api, str], browser: Browser, pool: asyncpg.Pool[Any]
) -> None:
    api, base = hub
    await set_password(api, "alice")
    other = Browser(base)  # say, a laptop left signed in somewhere
    try:
        assert (await other.login("alice")).status == 302
        assert (await browser.login("alice")).status == 302
        form = await browser.get("/hub/password")
        changed = await browser.post(
            "/hub/password",
            data={
                "_xsrf": form.hidden("_xsrf"),
                "current_password": PASSWORD,
                "password": "x" * 12,
            },
        )
        assert changed.status == 200
        assert (await browser.get("/hub/api/user")).status == 200  # the one that changed it
        assert (await other.get("/hub/api/user")).status == 403
        assert await sessions_of(pool, "alice") == 1

        status, _ = await api.call("PUT", "/users/alice/password", json={"password": "y" * 12})
        assert status == 204
        assert (await browser.get("/hub/api/user")).status == 403  # an admin's reset: all
        assert await sessions_of(pool, "alice") == 0
    finally:
        await other.close()
    reasons = [e["reason"] for e in await events_of(pool, "user.logged_out")]
    assert reasons == ["password_changed", "password_changed"]
