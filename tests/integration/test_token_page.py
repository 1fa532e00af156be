"""``/hub/token`` in a browser: request a token (shown once), see and revoke tokens, revoke an
application's access; every bad form refused with its message and nothing issued."""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import pytest

from events import store
from tests.integration.api_fixtures import Api
from tests.integration.browser import Browser, Page, running_hub, set_password
from tests.integration.oauth_fixtures import alice as alice
from tests.integration.oauth_fixtures import exchange, get_code, pkce
from tests.integration.oauth_fixtures import hub as hub

pytestmark = pytest.mark.integration

TOKEN = re.compile(r'<code id="new-token">([^<]+)</code>')


async def request_token(browser: Browser, **fields: str) -> Page:
    page = await browser.get("/hub/token")
    assert page.status == 200, page.text
    form = {"_xsrf": page.hidden("_xsrf"), "note": "", "expires_in": "", "scopes": "", **fields}
    return await browser.post("/hub/token", data=form)


async def tokens_of(pool: asyncpg.Pool[Any], name: str) -> int:
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM tokens t JOIN users u USING (user_id) WHERE u.name = $1", name
        )
    )


async def test_signed_out_the_page_sends_to_login(hub: tuple[Api, str]) -> None:
    browser = Browser(hub[1])
    try:
        page = await browser.get("/hub/token")
        assert page.status == 302
        assert page.location == "/hub/login?next=/hub/token"
    finally:
        await browser.close()


async def test_a_requested_token_is_shown_once_works_and_can_be_revoked(
    hub: tuple[Api, str], alice: Browser, pool: asyncpg.Pool[Any]
) -> None:
    api, _ = hub
    page = await request_token(
        alice, note="laptop", expires_in="86400", scopes="read:users:name!user=alice"
    )
    assert page.status == 201, page.text
    secret = TOKEN.search(page.text)
    assert secret is not None
    status, me = await api.call("GET", "/user", token=secret.group(1))
    assert status == 200
    assert me["name"] == "alice"
    assert "read:users:name!user=alice" in me["scopes"]
    assert not any(s.startswith(("tokens", "servers", "users", "admin")) for s in me["scopes"])
    listed = await alice.get("/hub/token")
    assert "laptop" in listed.text
    assert secret.group(1) not in listed.text  # shown once, in the reply to the form
    status, tokens = await api.call("GET", "/users/alice/tokens")
    assert status == 200, tokens
    [token] = tokens["api_tokens"]
    assert token["note"] == "laptop"
    assert token["expires_at"] is not None
    actor = await pool.fetchval(
        "SELECT metadata->'actor'->>'name' FROM events"
        " WHERE event_type = 'token.issued' AND data->>'owner_name' = 'alice'"
    )
    assert actor == "alice"
    log = "\n".join(r[0] for r in await pool.fetch("SELECT row_to_json(e)::text FROM events e"))
    assert secret.group(1) not in log

    revoked = await alice.post(
        "/hub/token/revoke", data={"_xsrf": listed.hidden("_xsrf"), "token_id": token["id"]}
    )
    assert revoked.status == 200
    assert "Revoked" in revoked.text
    assert (await api.call("GET", "/user", token=secret.group(1)))[0] == 403
    assert await tokens_of(pool, "alice") == 0


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"scopes": "no-such-scope"}, 400, "no-such-scope"),
        ({"scopes": "admin:users"}, 400, "admin:users"),
        ({"expires_in": "soon"}, 400, "expires_in: Input should be a valid integer"),
        ({"expires_in": "²"}, 400, "expires_in: Input should be a valid integer"),  # isdigit
        ({"expires_in": "0"}, 400, "expires_in: Input should be greater than or equal to 1"),
        ({"note": "x" * 1001}, 400, "note: String should have at most 1000 characters"),
    ],
)
async def test_bad_requests_are_refused_with_their_reason_and_issue_nothing(
    hub: tuple[Api, str],
    alice: Browser,
    pool: asyncpg.Pool[Any],
    fields: dict[str, str],
    status: int,
    message: str,
) -> None:
    page = await request_token(alice, **fields)
    assert page.status == status, page.text
    assert message in page.text
    assert TOKEN.search(page.text) is None
    assert await tokens_of(pool, "alice") == 0


async def test_forms_without_the_xsrf_token_are_refused(
    hub: tuple[Api, str], alice: Browser, pool: asyncpg.Pool[Any]
) -> None:
    api, _ = hub
    assert (await alice.post("/hub/token", data={"note": "x"})).status == 403
    assert await tokens_of(pool, "alice") == 0
    status, made = await api.call("POST", "/users/alice/tokens", json={})
    assert status == 201
    refused = await alice.post("/hub/token/revoke", data={"token_id": made["id"]})
    assert refused.status == 403
    assert await tokens_of(pool, "alice") == 1


async def test_another_users_token_cannot_be_revoked_from_the_page(
    hub: tuple[Api, str], alice: Browser, pool: asyncpg.Pool[Any]
) -> None:
    api, _ = hub
    await set_password(api, "bob")
    status, bobs = await api.call("POST", "/users/bob/tokens", json={})
    assert status == 201
    page = await alice.get("/hub/token")
    refused = await alice.post(
        "/hub/token/revoke", data={"_xsrf": page.hidden("_xsrf"), "token_id": bobs["id"]}
    )
    assert refused.status == 404
    assert f"No such token: {bobs['id']}" in refused.text
    assert await tokens_of(pool, "bob") == 1


async def test_lifetimes_offered_respect_the_hubs_limit(event_store: store.EventStore) -> None:
    async with running_hub(event_store, token_expires_in_max_seconds=86400) as (api, base):
        await set_password(api, "alice")
        browser = Browser(base)
        try:
            assert (await browser.login("alice")).status == 302
            page = await browser.get("/hub/token")
            offered = re.findall(r'<option value="([^"]*)">', page.text)
            assert offered == ["3600", "86400"]
            refused = await request_token(browser, expires_in="604800")
            assert refused.status == 400
            assert "expires_in must be at most 86400 seconds" in refused.text
        finally:
            await browser.close()


async def test_an_authorized_application_is_listed_and_its_access_revoked(
    hub: tuple[Api, str], alice: Browser, pool: asyncpg.Pool[Any]
) -> None:
    api, _ = hub
    issued = []
    for _ in range(2):
        verifier, challenge = pkce()
        code = await get_code(alice, challenge)
        status, reply = await exchange(alice, code=code, code_verifier=verifier)
        assert status == 200, reply
        issued.append(reply["access_token"])
    status, own = await api.call("POST", "/users/alice/tokens", json={"note": "mine"})
    assert status == 201
    page = await alice.get("/hub/token")
    apps = re.findall(r'<tr class="application" data-name="([^"]+)">', page.text)
    assert apps == ["Service whoami"]  # two tokens, one application
    app_row = page.text.split('<tr class="application"')[1]
    token_id = re.search(r'name="token_id" value="([^"]+)"', app_row)
    assert token_id is not None
    revoked = await alice.post(
        "/hub/token/revoke", data={"_xsrf": page.hidden("_xsrf"), "token_id": token_id.group(1)}
    )
    assert revoked.status == 200
    assert 'class="application"' not in revoked.text
    for token in issued:
        assert (await api.call("GET", "/user", token=token))[0] == 403
    assert (await api.call("GET", "/user", token=own["token"]))[0] == 200
