"""REST writes retried with an ``Idempotency-Key`` header (hub/web/idempotency.py) against real
PostgreSQL: the first answer again, no second event, keys per caller, bad keys refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp import test_utils, web

from events import store
from hub import app, bootstrap, context
from hub import settings as hub_settings
from hub.errors import Handler
from tests.integration.api_fixtures import CONFIG, SERVICE_TOKEN, Api

pytestmark = pytest.mark.integration

CREATED = "SELECT count(*) FROM events WHERE event_type = 'user.created' AND data->>'name' = $1"


def key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


async def call(
    api: Api, method: str, path: str, headers: dict[str, str], **kwargs: Any
) -> tuple[int, Any, dict[str, str]]:
    """Like ``Api.call``, with the answer's headers."""
    response = await api.client.request(
        method,
        "/hub/api" + path,
        headers={"Authorization": f"token {SERVICE_TOKEN}", **headers},
        **kwargs,
    )
    text = await response.text()
    body = await response.json(content_type=None) if text else None
    return response.status, body, dict(response.headers)


async def test_a_retried_create_gets_the_first_answer_and_writes_once(
    api: Api, pool: asyncpg.Pool[Any]
) -> None:
    first = await call(api, "POST", "/users/ada", key("k-1"), json={"admin": False})
    again = await call(api, "POST", "/users/ada", key("k-1"), json={"admin": False})
    assert first[0] == again[0] == 201, (first, again)
    assert again[1] == first[1]
    assert again[2]["Content-Type"].startswith("application/json")
    assert again[2].get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first[2]
    assert await pool.fetchval(CREATED, "ada") == 1
    # without the key, the same request is a new one: JupyterHub's 409
    status, _ = await api.call("POST", "/users/ada", json={"admin": False})
    assert status == 409


async def test_a_retried_token_gets_the_same_token_once(api: Api, pool: asyncpg.Pool[Any]) -> None:
    await api.call("POST", "/users/bob")
    before = await pool.fetchval("SELECT count(*) FROM events WHERE event_type LIKE 'token.%'")
    first = await call(api, "POST", "/users/bob/tokens", key("tok-1"), json={"note": "ci"})
    again = await call(api, "POST", "/users/bob/tokens", key("tok-1"), json={"note": "ci"})
    assert first[0] == again[0] == 201
    assert again[1]["token"] == first[1]["token"]
    after = await pool.fetchval("SELECT count(*) FROM events WHERE event_type LIKE 'token.%'")
    assert after == before + 1
    status, me = await api.call("GET", "/user", token=first[1]["token"])
    assert (status, me["name"]) == (200, "bob")
    # the answer (which holds the token) is kept sealed, not in the clear
    stored = await pool.fetch("SELECT answer, headers::text AS headers FROM idempotency_keys")
    assert stored
    for row in stored:
        assert first[1]["token"].encode() not in row["answer"]
        assert first[1]["token"] not in row["headers"]


async def test_patch_and_delete_retries_are_answered_again(
    api: Api, pool: asyncpg.Pool[Any]
) -> None:
    await api.call("POST", "/groups/team")
    first = await call(api, "PATCH", "/users/nobody", key("p-1"), json={"admin": True})
    assert first[0] == 404  # an error answer is not kept: nothing was written
    await api.call("POST", "/users/carol")
    first = await call(api, "PATCH", "/users/carol", key("p-1"), json={"admin": True})
    again = await call(api, "PATCH", "/users/carol", key("p-1"), json={"admin": True})
    assert first[0] == again[0] == 200
    assert again[1] == first[1]
    assert again[2].get("Idempotent-Replayed") == "true"
    first = await call(api, "DELETE", "/groups/team", key("d-1"))
    again = await call(api, "DELETE", "/groups/team", key("d-1"))
    assert first[0] == again[0] == 204, (first, again)
    deleted = "SELECT count(*) FROM events WHERE event_type = 'group.deleted'"
    assert await pool.fetchval(deleted) == 1


async def test_a_handler_beside_the_transaction_is_answered_again_too(
    api: Api, pool: asyncpg.Pool[Any]
) -> None:
    """Deleting a user (servers stopped before, repositories removed after: not one
    transaction) keeps its answer too, recorded once its work is done."""
    await api.call("POST", "/users/gone")
    first = await call(api, "DELETE", "/users/gone", key("del-1"))
    again = await call(api, "DELETE", "/users/gone", key("del-1"))
    assert first[0] == again[0] == 204, (first, again)
    assert again[2].get("Idempotent-Replayed") == "true"
    deleted = "SELECT count(*) FROM events WHERE event_type = 'user.deleted'"
    assert await pool.fetchval(deleted) == 1


async def test_the_same_key_with_another_request_is_refused_with_422(api: Api) -> None:
    status, _, _ = await call(api, "POST", "/users/dan", key("k-2"), json={"admin": False})
    assert status == 201
    for method, path, body in [
        ("POST", "/users/dan", {"admin": True}),  # another body
        ("POST", "/users/eve", {"admin": False}),  # another path
        ("PATCH", "/users/dan", {"admin": False}),  # another method
    ]:
        status, reply, _ = await call(api, method, path, key("k-2"), json=body)
        assert status == 422, reply
        assert "Idempotency-Key was used with a different request" in reply["message"]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "the key is empty"),
        ('""', "the key is empty"),
        ("x" * 256, "256 characters long, at most 255"),
        ("caf\u00e9", "printable ASCII"),
    ],
)
async def test_bad_keys_are_refused_with_400_naming_the_problem(
    api: Api, pool: asyncpg.Pool[Any], value: str, problem: str
) -> None:
    response = await api.client.post(
        "/hub/api/users/fay",
        headers=[("Authorization", f"token {SERVICE_TOKEN}"), ("Idempotency-Key", value)],
    )
    reply = await response.json()
    assert response.status == 400, reply
    assert problem in reply["message"]
    assert await pool.fetchval(CREATED, "fay") == 0


async def test_a_key_sent_twice_is_refused(api: Api) -> None:
    response = await api.client.post(
        "/hub/api/users/fay",
        headers=[
            ("Authorization", f"token {SERVICE_TOKEN}"),
            ("Idempotency-Key", "a"),
            ("Idempotency-Key", "b"),
        ],
    )
    assert response.status == 400
    assert "send the header once" in (await response.json())["message"]


async def test_a_quoted_key_is_the_same_key(api: Api, pool: asyncpg.Pool[Any]) -> None:
    first = await call(api, "POST", "/users/gil", key('"k-3"'))
    again = await call(api, "POST", "/users/gil", key("k-3"))
    assert first[0] == again[0] == 201
    assert again[2].get("Idempotent-Replayed") == "true"
    assert await pool.fetchval(CREATED, "gil") == 1


async def test_keys_belong_to_their_caller(api: Api, pool: asyncpg.Pool[Any]) -> None:
    token = await api.user_token("hal", scopes=["self"])
    status, _, _ = await call(api, "POST", "/users/ivy", key("shared"))
    assert status == 201
    # hal's request with the service's key is hal's own: run, not answered from the service's
    response = await api.client.post(
        "/hub/api/users/hal/tokens",
        headers={"Authorization": f"token {token}", "Idempotency-Key": "shared"},
        json={"note": "mine"},
    )
    assert response.status == 201, await response.text()
    assert "Idempotent-Replayed" not in response.headers


async def test_another_token_of_the_same_user_cannot_replay_an_answer(
    api: Api, pool: asyncpg.Pool[Any]
) -> None:
    # kim's full token issues a token with key K; kim's narrower token (her server's, an OAuth
    # client's) sending the same request and key must not get that token's secret
    full = await api.user_token("kim")
    narrow = await api.user_token("kim", scopes=["read:users:name!user=kim"])

    async def issue(token: str) -> tuple[int, dict[str, str], Any]:
        response = await api.client.post(
            "/hub/api/users/kim/tokens",
            headers={"Authorization": f"token {token}", "Idempotency-Key": "K"},
            json={"note": "k"},
        )
        return response.status, dict(response.headers), await response.json()

    status, _, first = await issue(full)
    assert status == 201, first
    status, headers, answer = await issue(narrow)
    assert status == 403, answer  # run for this token, and refused: no replay
    assert "Idempotent-Replayed" not in headers
    assert first["token"] not in str(answer)
    # the full token's own retry is still answered from the key
    status, headers, again = await issue(full)
    assert (status, headers.get("Idempotent-Replayed")) == (201, "true")
    assert again["token"] == first["token"]


async def test_an_expired_key_is_a_new_request(api: Api, pool: asyncpg.Pool[Any]) -> None:
    first = await call(api, "POST", "/users/jo", key("k-4"))
    assert first[0] == 201
    await pool.execute("UPDATE idempotency_keys SET expires = now() - interval '1 second'")
    again = await call(api, "POST", "/users/jo", key("k-4"))
    assert again[0] == 409  # run again: the user exists now
    # and the key is kept afresh for the new request (expired rows are replaced)
    third = await call(api, "POST", "/users/jo", key("k-4"))
    assert third[0] == 409


async def test_concurrent_requests_with_one_key_write_once(
    api: Api, pool: asyncpg.Pool[Any]
) -> None:
    answers = await asyncio.gather(*(call(api, "POST", "/users/kim", key("k-5")) for _ in range(6)))
    statuses = sorted(a[0] for a in answers)
    assert 201 in statuses
    assert set(statuses) <= {201, 409}, answers  # 409: the first is under way, as the draft says
    for status, reply, _ in answers:
        if status == 409:
            assert "under way" in reply["message"]
    assert await pool.fetchval(CREATED, "kim") == 1
    again = await call(api, "POST", "/users/kim", key("k-5"))
    assert again[0] == 201
    assert again[2].get("Idempotent-Replayed") == "true"


# --- the answer lost after the commit ------------------------------------------------------------


@pytest.fixture
async def lossy(event_store: store.EventStore) -> AsyncIterator[tuple[Api, list[str]]]:
    """The hub's app behind a middleware that, for the paths listed, cuts the connection once
    the request is done (committed), so its answer never reaches the client: what a hub killed
    between its commit and its answer leaves behind."""
    config = hub_settings.Settings(**CONFIG)
    await bootstrap.reconcile(event_store, config)
    hub = context.Hub(settings=config, store=event_store, database="test")
    application = app.make_app(hub)
    drop: list[str] = []

    @web.middleware
    async def cut(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if request.path in drop:
            drop.remove(request.path)
            assert request.transport is not None
            request.transport.abort()
            raise ConnectionResetError("the answer is lost")
        return response

    application.middlewares.insert(0, cut)
    async with test_utils.TestClient(test_utils.TestServer(application)) as client:
        yield Api(client, event_store), drop


async def test_a_retry_after_a_lost_answer_gets_it_and_writes_nothing_more(
    lossy: tuple[Api, list[str]], pool: asyncpg.Pool[Any]
) -> None:
    api, drop = lossy
    drop.append("/hub/api/users/lee")
    with pytest.raises(Exception, match=r"(?i)disconnect|reset|closed"):
        await call(api, "POST", "/users/lee", key("k-6"), json={"admin": True})
    assert await pool.fetchval(CREATED, "lee") == 1  # committed, not answered
    status, body, headers = await call(api, "POST", "/users/lee", key("k-6"), json={"admin": True})
    assert status == 201
    assert body["name"] == "lee"
    assert body["admin"] is True
    assert headers.get("Idempotent-Replayed") == "true"
    assert await pool.fetchval(CREATED, "lee") == 1
