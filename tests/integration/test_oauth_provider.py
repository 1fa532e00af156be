"""The hub as an OAuth2 provider: authorization code + PKCE, JupyterHub's clients and consent
rules, and every way an authorize or token request can be wrong (each refused with its
status and message, nothing granted: no code, no token)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from events import models, store
from hub import bootstrap
from hub import settings as hub_settings
from hub.auth.oauth import clients as oauth_clients
from tests.integration.api_fixtures import CONFIG, Api
from tests.integration.browser import Browser
from tests.integration.oauth_fixtures import (
    REDIRECT,
    ROLES,
    SERVICES,
    authorize_url,
    exchange,
    get_code,
    pkce,
)
from tests.integration.oauth_fixtures import alice as alice
from tests.integration.oauth_fixtures import hub as hub

pytestmark = pytest.mark.integration


async def count(pool: asyncpg.Pool[Any], sql: str) -> int:
    return int(await pool.fetchval(sql))


async def test_services_with_a_url_get_clients_at_startup_idempotently(
    hub: tuple[Api, str], event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    rows = await pool.fetch("SELECT * FROM oauth_clients ORDER BY client_id")
    assert [(r["client_id"], r["redirect_uri"], r["no_confirm"]) for r in rows] == [
        ("service-quiet", "/services/quiet/oauth_callback", True),
        ("service-whoami", REDIRECT, False),
    ]
    assert list(rows[1]["allowed_scopes"]) == [
        "access:services!service=whoami",
        "read:users:name!user",
        "read:users:groups!user",
    ]
    config = hub_settings.Settings(**{**CONFIG, "services": SERVICES, "roles": ROLES})
    assert await bootstrap.reconcile(event_store, config) == 0
    bad = {**SERVICES[2], "oauth_client_allowed_scopes": ["no-such-scope"]}
    with pytest.raises(bootstrap.ConfigurationError, match="oauth_client_allowed_scopes of"):
        await bootstrap.reconcile(
            event_store,
            hub_settings.Settings(**{**CONFIG, "services": [*SERVICES[:3], bad], "roles": ROLES}),
        )
    dropped = hub_settings.Settings(**{**CONFIG, "services": SERVICES[:3], "roles": ROLES})
    assert await bootstrap.reconcile(event_store, dropped) >= 1
    assert await count(pool, "SELECT count(*) FROM oauth_clients") == 1


async def test_code_flow_with_pkce_issues_a_token_with_only_the_granted_scopes(
    hub: tuple[Api, str], alice: Browser, pool: asyncpg.Pool[Any]
) -> None:
    api, _ = hub
    verifier, challenge = pkce()
    first = await alice.get(
        authorize_url(redirect_uri=REDIRECT, code_challenge=challenge, code_challenge_method="S256")
    )
    assert first.status == 200
    assert "Authorize access" in first.text
    code = await get_code(alice, challenge)
    status, reply = await exchange(alice, code=code, code_verifier=verifier)
    assert status == 200, reply
    assert reply["token_type"] == "Bearer"
    assert reply["expires_in"] > 0
    assert set(reply["scope"].split()) == {
        "access:services!service=whoami",
        "read:users:groups!user",
        "read:users:name!user",
    }
    status, me = await api.call("GET", "/user", token=reply["access_token"])
    assert status == 200
    assert me["name"] == "alice"
    assert "access:services!service=whoami" in me["scopes"]
    assert not any(s.startswith(("tokens", "read:users!", "servers")) for s in me["scopes"])
    # The token is alice's, listed with her tokens; it can do nothing beyond its scopes.
    assert (await api.call("GET", "/users/alice/tokens", token=reply["access_token"]))[0] == 403

    # Approved once: the next authorization of the same scopes goes straight through.
    again = await alice.get(
        authorize_url(redirect_uri=REDIRECT, code_challenge=challenge, code_challenge_method="S256")
    )
    assert again.status == 302
    assert "code=" in (again.location or "")

    log = "\n".join(r[0] for r in await pool.fetch("SELECT row_to_json(e)::text FROM events e"))
    types = [r[0] for r in await pool.fetch("SELECT event_type FROM events")]
    assert types.count("oauth.code_issued") == 2
    assert types.count("oauth.code_exchanged") == 1
    assert code not in log
    assert reply["access_token"] not in log
    assert verifier not in log


async def test_a_code_is_single_use(
    hub: tuple[Api, str], alice: Browser, pool: asyncpg.Pool[Any]
) -> None:
    verifier, challenge = pkce()
    code = await get_code(alice, challenge)
    assert (await exchange(alice, code=code, code_verifier=verifier))[0] == 200
    tokens_before = await count(pool, "SELECT count(*) FROM tokens")
    status, reply = await exchange(alice, code=code, code_verifier=verifier)
    assert status == 400
    assert reply["error"] == "invalid_grant"
    assert reply["message"] == "invalid authorization code: unknown, already used or expired"
    assert await count(pool, "SELECT count(*) FROM tokens") == tokens_before


async def test_bad_token_requests_are_refused_and_grant_nothing(
    hub: tuple[Api, str], alice: Browser, pool: asyncpg.Pool[Any]
) -> None:
    verifier, challenge = pkce()
    tokens_before = await count(pool, "SELECT count(*) FROM tokens")

    async def refused(expect: tuple[int, str, str], **form: str | None) -> None:
        code = await get_code(alice, challenge)
        status, reply = await exchange(alice, code=code, **form)  # type: ignore[arg-type]
        assert (status, reply["error"], reply["message"]) == expect, reply
        # Spent by the attempt: the right request afterwards gets nothing either.
        assert (await exchange(alice, code=code, code_verifier=verifier))[0] == 400

    await refused(
        (400, "invalid_grant", "code_verifier does not match the code_challenge"),
        code_verifier=pkce()[0],
    )
    await refused(
        (400, "invalid_request", "code_verifier is required: the code was issued with a"
         " code_challenge"),
    )  # fmt: skip
    await refused(
        (400, "invalid_grant", "redirect_uri does not match the one of the authorization request"),
        code_verifier=verifier,
        redirect_uri="/services/evil/oauth_callback",
    )

    code = await get_code(alice, challenge)
    status, reply = await exchange(alice, code=code, code_verifier=verifier, client_secret="wrong")
    assert (status, reply["error"]) == (401, "invalid_client")
    assert reply["message"] == "client authentication failed: unknown client or wrong secret"
    status, reply = await exchange(
        alice, code=code, code_verifier=verifier, client_id="service-quiet", client_secret=None
    )
    assert (status, reply["error"]) == (401, "invalid_client")
    # Another client's own secret does not let it take this code.
    status, reply = await exchange(
        alice,
        code=code,
        code_verifier=verifier,
        client_id="service-bench-missing",
    )
    assert status == 401

    expired = await get_code(alice, challenge)
    await pool.execute("UPDATE oauth_codes SET expires_at = now() - interval '1 second'")
    status, reply = await exchange(alice, code=expired, code_verifier=verifier)
    assert (status, reply["error"], reply["message"]) == (
        400,
        "invalid_grant",
        "the authorization code has expired",
    )
    status, reply = await exchange(alice, code="made-up", code_verifier=verifier)
    assert (status, reply["error"]) == (400, "invalid_grant")
    status, reply = await exchange(alice, code=code, grant_type="password")
    assert (status, reply["error"]) == (400, "unsupported_grant_type")
    assert await count(pool, "SELECT count(*) FROM tokens") == tokens_before
    assert "oauth.code_exchanged" not in [
        r[0] for r in await pool.fetch("SELECT event_type FROM events")
    ]


async def test_bad_authorize_requests_are_refused_and_issue_no_code(
    hub: tuple[Api, str], alice: Browser, pool: asyncpg.Pool[Any]
) -> None:
    _, challenge = pkce()
    pk = {"code_challenge": challenge, "code_challenge_method": "S256"}

    unknown = await alice.get(authorize_url("service-nope", **pk))
    assert unknown.status == 400
    assert "Unknown OAuth client: service-nope" in unknown.text
    evil = await alice.get(authorize_url(redirect_uri="https://evil.example/cb", **pk))
    assert evil.status == 400
    assert evil.location is None
    assert (
        "redirect_uri https://evil.example/cb is not registered for OAuth client service-whoami"
        in evil.text
    )
    plain = await alice.get(authorize_url(code_challenge=challenge, code_challenge_method="plain"))
    assert plain.status == 302
    query = parse_qs(urlsplit(plain.location or "").query)
    assert query["error"] == ["invalid_request"]
    assert query["state"] == ["st4te"]
    assert query["error_description"] == ["code_challenge_method must be S256, not plain"]
    wide = await alice.get(authorize_url(scope="admin:users", **pk))
    assert parse_qs(urlsplit(wide.location or "").query)["error"] == ["invalid_scope"]
    token_type = await alice.get(authorize_url(response_type="token", **pk))
    assert parse_qs(urlsplit(token_type.location or "").query)["error"] == [
        "unsupported_response_type"
    ]

    anonymous = Browser(alice.base)
    try:
        page = await anonymous.get(authorize_url(**pk))
        assert page.status == 302
        assert (page.location or "").startswith("/hub/login?next=")
        assert (
            await anonymous.login("bob", next_url=urlsplit(page.location or "").query[5:])
        ).status == 302
        refused = await anonymous.get(authorize_url(**pk))
        assert refused.status == 403
        assert "You do not have permission to access Service whoami" in refused.text
    finally:
        await anonymous.close()
    assert await count(pool, "SELECT count(*) FROM oauth_codes") == 0
    assert "oauth.code_issued" not in [
        r[0] for r in await pool.fetch("SELECT event_type FROM events")
    ]


async def test_the_consent_form_needs_the_xsrf_token(
    hub: tuple[Api, str], alice: Browser, pool: asyncpg.Pool[Any]
) -> None:
    _, challenge = pkce()
    page = await alice.get(
        authorize_url(redirect_uri=REDIRECT, code_challenge=challenge, code_challenge_method="S256")
    )
    forged = [(k, v) for k, v in page.fields() if k != "_xsrf"]
    posted = await alice.post("/hub/api/oauth2/authorize", data=forged)
    assert posted.status == 403
    assert json.loads(posted.text)["message"] == "'_xsrf' argument missing from POST"
    assert await count(pool, "SELECT count(*) FROM oauth_codes") == 0


async def test_server_clients_for_the_spawner(
    hub: tuple[Api, str], alice: Browser, event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    api, _ = hub
    status, server_token = await api.call(
        "POST", "/users/alice/tokens", json={"note": "Server at /user/alice/"}
    )
    assert status == 201
    client_id = await oauth_clients.register_server_client(
        event_store,
        user="alice",
        server_name="",
        redirect_uri=None,
        token_id=server_token["id"],
        metadata=models.Metadata(),
    )
    assert client_id == "jupyterhub-user-alice"
    again = await oauth_clients.register_server_client(
        event_store, user="alice", server_name="", redirect_uri=None, token_id=server_token["id"]
    )
    assert again == client_id
    assert [r[0] for r in await pool.fetch("SELECT event_type FROM events")].count(
        "oauth_client.registered"
    ) == 3  # two services at startup, this server once
    named = await oauth_clients.register_server_client(
        event_store, user="alice", server_name="lab 1", redirect_uri=None, token_id="t0"
    )
    assert named == "jupyterhub-user-alice-lab%201"

    verifier, challenge = pkce()
    redirect = "/user/alice/oauth_callback"
    page = await alice.get(
        authorize_url(
            client_id,
            redirect_uri=redirect,
            code_challenge=challenge,
            code_challenge_method="S256",
        )
    )
    assert page.status == 302, page.text  # her own server: no consent page
    code = parse_qs(urlsplit(page.location or "").query)["code"][0]
    status, reply = await exchange(
        alice,
        code=code,
        code_verifier=verifier,
        client_id=client_id,
        client_secret=server_token["token"],
        redirect_uri=redirect,
    )
    assert status == 200, reply
    status, me = await api.call("GET", "/user", token=reply["access_token"])
    assert status == 200, me
    assert "access:servers!server=alice/" in me["scopes"]

    bob = Browser(alice.base)
    try:
        await bob.login("bob")
        refused = await bob.get(authorize_url(client_id, redirect_uri=redirect))
        assert refused.status == 403
        assert "Server at /user/alice/" in refused.text
    finally:
        await bob.close()

    assert await oauth_clients.remove_server_client(event_store, user="alice", server_name="")
    assert not await oauth_clients.remove_server_client(event_store, user="alice", server_name="")
    gone = await alice.get(authorize_url(client_id, redirect_uri=redirect))
    assert gone.status == 400
    assert "Unknown OAuth client" in gone.text


async def test_an_oauth_token_names_its_client_and_is_revoked_with_the_clients_others(
    hub: tuple[Api, str], alice: Browser, pool: asyncpg.Pool[Any]
) -> None:
    """As in JupyterHub: revoking one token of an OAuth client revokes the user's access
    through that client (all its tokens), and nothing else."""
    api, _ = hub
    issued = []
    for _ in range(2):
        verifier, challenge = pkce()
        status, reply = await exchange(
            alice, code=await get_code(alice, challenge), code_verifier=verifier
        )
        assert status == 200, reply
        issued.append(reply["access_token"])
    status, plain = await api.call("POST", "/users/alice/tokens", json={"note": "plain"})
    assert status == 201, plain
    status, listed = await api.call("GET", "/users/alice/tokens")
    assert status == 200
    clients = sorted(t["oauth_client"] for t in listed["api_tokens"])
    assert clients == ["JupyterHub", "Service whoami", "Service whoami"], listed
    oauth_ids = [t["id"] for t in listed["api_tokens"] if t["oauth_client"] != "JupyterHub"]

    assert (await api.call("DELETE", f"/users/alice/tokens/{oauth_ids[0]}"))[0] == 204
    for token in issued:
        assert (await api.call("GET", "/user", token=token))[0] == 403
    status, me = await api.call("GET", "/user", token=plain["token"])
    assert status == 200, me
    status, listed = await api.call("GET", "/users/alice/tokens")
    assert status == 200, listed
    assert [t["id"] for t in listed["api_tokens"]] == [plain["id"]]
    revoked = await pool.fetch(
        "SELECT data->>'token_id' AS token_id, metadata->'actor'->>'name' AS actor"
        " FROM events WHERE event_type = 'token.revoked' ORDER BY global_position"
    )
    assert sorted(r["token_id"] for r in revoked) == sorted(oauth_ids)
    assert {r["actor"] for r in revoked} == {"bench"}  # the admin service the fixture calls as


async def test_removing_a_client_revokes_the_tokens_issued_to_it(
    hub: tuple[Api, str], alice: Browser, event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    """A server's client goes when the server stops (JupyterHub deletes it, and its tokens
    with it): a browser's token for the old server must not outlive it."""
    api, _ = hub
    status, server_token = await api.call("POST", "/users/alice/tokens", json={"note": "server"})
    assert status == 201
    client_id = await oauth_clients.register_server_client(
        event_store, user="alice", server_name="", redirect_uri=None, token_id=server_token["id"]
    )
    verifier, challenge = pkce()
    redirect = "/user/alice/oauth_callback"
    page = await alice.get(
        authorize_url(
            client_id, redirect_uri=redirect, code_challenge=challenge, code_challenge_method="S256"
        )
    )
    code = parse_qs(urlsplit(page.location or "").query)["code"][0]
    status, reply = await exchange(
        alice,
        code=code,
        code_verifier=verifier,
        client_id=client_id,
        client_secret=server_token["token"],
        redirect_uri=redirect,
    )
    assert status == 200, reply
    assert (await api.call("GET", "/user", token=reply["access_token"]))[0] == 200

    assert await oauth_clients.remove_server_client(event_store, user="alice", server_name="")
    assert (await api.call("GET", "/user", token=reply["access_token"]))[0] == 403
    assert await count(pool, "SELECT count(*) FROM tokens WHERE oauth_client IS NOT NULL") == 0
    # The server's own API token is not an OAuth token of that client: it stays.
    assert (await api.call("GET", "/user", token=server_token["token"]))[0] == 200
