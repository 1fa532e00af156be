"""The audit API: history with filters and cursors, the live SSE stream, and scope limits."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest

from hub.api import models as api_models
from tests.integration.api_fixtures import SERVICE_TOKEN, Api

pytestmark = pytest.mark.integration

PAGINATED = {"Accept": "application/jupyterhub-pagination+json"}


async def admin_token(api: Api) -> str:
    return await api.user_token("admin")


async def test_history_filters_and_cursor(api: Api) -> None:
    token = await admin_token(api)
    await api.call("POST", "/users", json={"usernames": ["h1", "h2", "h3"]})
    await api.call("PATCH", "/users/h2", json={"admin": True})
    await api.call("POST", "/groups", json={"groups": ["hg"], "users": ["h1"]})

    status, everything = await api.call("GET", "/events", token=token)
    assert status == 200
    for event in everything:
        api_models.Event.model_validate(event)
    positions = [e["position"] for e in everything]
    assert positions == sorted(positions)

    status, users = await api.call(
        "GET", "/events?type_prefix=user.&actor=service:bench", token=token
    )
    assert status == 200, users
    assert {e["type"] for e in users} == {"user.created", "user.admin_changed"}
    assert [e["data"]["name"] for e in users if e["type"] == "user.created"] == ["h1", "h2", "h3"]

    status, about_h1 = await api.call("GET", "/events?user=h1", token=token)
    assert status == 200, about_h1
    assert [e["type"] for e in about_h1] == ["user.created", "group.members_added"]

    status, newest = await api.call("GET", "/events?order=desc&limit=2", token=token)
    assert status == 200, newest
    assert [e["position"] for e in newest] == sorted(positions, reverse=True)[:2]

    # Pages by position, following next.url to the end, lose and repeat nothing.
    seen: list[int] = []
    url: str | None = "/hub/api/events?limit=3"
    while url:
        response = await api.client.session.get(
            url if url.startswith("http") else str(api.client.make_url(url)),
            headers={**PAGINATED, "Authorization": f"token {token}"},
        )
        page = await response.json()
        api_models.EventPage.model_validate(page)
        seen += [e["position"] for e in page["items"]]
        nxt = page["_pagination"]["next"]
        url = nxt["url"] if nxt else None
    assert seen == positions


async def test_history_about_a_user_pages_both_ways(api: Api) -> None:
    """The subject-first queries (index on data, then order and cut): every page, oldest or
    newest first, holds exactly that user's events, in order, none lost or repeated."""
    token = await admin_token(api)
    await api.call("POST", "/users", json={"usernames": ["p1", "p2"]})
    for i in range(4):
        await api.call("PATCH", "/users/p1", json={"admin": i % 2 == 0})
        await api.call("PATCH", "/users/p2", json={"admin": i % 2 == 0})
        await api.call("POST", "/users/p1/tokens", json={"note": f"t{i}"})
    status, everything = await api.call("GET", "/events?limit=200", token=token)
    assert status == 200, everything
    status, about_p1 = await api.call("GET", "/events?user=p1&limit=200", token=token)
    assert status == 200, about_p1
    p1_id = about_p1[0]["data"]["user_id"]
    expected = [e["position"] for e in everything if p1_id in json.dumps(e["data"])]
    assert len(expected) == 9  # created, 4 admin changes, 4 tokens
    for order, want in (("asc", expected), ("desc", expected[::-1])):
        seen: list[int] = []
        url: str | None = f"/hub/api/events?user=p1&order={order}&limit=2"
        while url:
            response = await api.client.session.get(
                url if url.startswith("http") else str(api.client.make_url(url)),
                headers={**PAGINATED, "Authorization": f"token {token}"},
            )
            page = await response.json()
            seen += [e["position"] for e in page["items"]]
            nxt = page["_pagination"]["next"]
            url = nxt["url"] if nxt else None
        assert seen == want, order


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("order=sideways", "order must be"),
        ("limit=0", "limit must be between"),
        ("since=yesterday", "since must be an ISO 8601 time"),
        ("since=2026-11-01T00:00", "must include a timezone"),
        ("after=-3", "after must be a non-negative integer"),
    ],
)
async def test_bad_queries_are_refused(api: Api, query: str, message: str) -> None:
    token = await admin_token(api)
    status, payload = await api.call("GET", f"/events?{query}", token=token)
    assert status == 400
    assert message in payload["message"]


async def test_read_events_scope_limits_what_is_seen(api: Api) -> None:
    await api.call("POST", "/users", json={"usernames": ["alice", "bob"]})
    await api.call("POST", "/groups", json={"groups": ["team"], "users": ["bob"]})
    user_token = await api.user_token("alice")
    assert (await api.call("GET", "/events", token=user_token))[0] == 403
    assert (await api.call("GET", "/events", token=SERVICE_TOKEN))[0] == 403

    only_alice = await api.user_token("admin", scopes=["read:events!user=alice"])
    status, seen = await api.call("GET", "/events", token=only_alice)
    assert status == 200
    assert seen
    assert all(e["data"].get("user_id") == seen[0]["data"]["user_id"] for e in seen)
    assert (await api.call("GET", "/events?user=bob", token=only_alice))[0] == 404

    by_group = await api.user_token("admin", scopes=["read:events!group=team"])
    status, team = await api.call("GET", "/events", token=by_group)
    assert status == 200, team
    assert {e["type"] for e in team} == {"user.created", "group.created", "group.members_added"}
    assert "alice" not in json.dumps(team)


async def read_sse(response: Any, count: int, timeout_s: float = 10) -> list[dict[str, Any]]:
    """The next ``count`` events of an SSE response (ids and data), skipping comments."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}

    async def collect() -> None:
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith(":"):
                continue
            if line.startswith("id: "):
                current["id"] = line[4:]
            elif line.startswith("data: "):
                current["data"] = json.loads(line[6:])
            elif line == "" and current:
                events.append(dict(current))
                current.clear()
                if len(events) == count:
                    return

    await asyncio.wait_for(collect(), timeout_s)
    return events


async def test_stream_catches_up_follows_live_and_resumes(
    api: Api, pool: asyncpg.Pool[Any]
) -> None:
    token = await admin_token(api)
    await api.call("POST", "/users", json={"usernames": ["s1", "s2"]})
    headers = {"Authorization": f"token {token}"}
    async with api.client.get("/hub/api/events/stream?type=user.created", headers=headers) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        caught_up = await read_sse(r, 3)  # admin, s1, s2
        assert [e["data"]["data"]["name"] for e in caught_up] == ["admin", "s1", "s2"]
        await api.call("POST", "/users/s3")
        [live] = await read_sse(r, 1)
        assert live["data"]["data"]["name"] == "s3"
        assert live["id"] == live["data"]["id"]
    # Reconnect with Last-Event-ID: nothing lost, nothing repeated.
    await api.call("POST", "/users/s4")
    resume = {**headers, "Last-Event-ID": caught_up[-1]["id"]}
    async with api.client.get("/hub/api/events/stream?type=user.created", headers=resume) as r:
        again = await read_sse(r, 2)
    assert [e["data"]["data"]["name"] for e in again] == ["s3", "s4"]


async def test_stream_refuses_bad_cursors_and_missing_scopes(api: Api) -> None:
    token = await admin_token(api)
    status, payload = await api.call("GET", "/events/stream?after=nonsense", token=token)
    assert status == 400
    assert "after/Last-Event-ID" in payload["message"]
    user_token = await api.user_token("someone")
    assert (await api.call("GET", "/events/stream", token=user_token))[0] == 403


async def test_each_event_type_has_its_schema_in_the_openapi_document(api: Api) -> None:
    status, spec = await api.call("GET", "/openapi.json", token=None)
    assert status == 200, spec
    schemas = spec["components"]["schemas"]
    for type_name in ("user.created", "group.members_added", "token.issued", "role.granted"):
        assert f"event.{type_name}" in schemas
    assert "token" not in schemas["event.token.issued"]["properties"]
    assert "/events" in spec["paths"]


async def test_scopes_for_one_kind_of_event(api: Api) -> None:
    await api.call("POST", "/users", json={"usernames": ["k1", "k2"]})
    await api.call("POST", "/groups", json={"groups": ["kg"], "users": ["k1"]})
    await api.user_token("k2")  # a token.issued event about k2

    groups_only = await api.user_token("admin", scopes=["read:events:groups"])
    status, seen = await api.call("GET", "/events", token=groups_only)
    assert status == 200
    assert {e["type"] for e in seen} == {"group.created", "group.members_added"}

    k2_tokens = await api.user_token("admin", scopes=["read:events:tokens!user=k2"])
    status, seen = await api.call("GET", "/events", token=k2_tokens)
    assert status == 200, seen
    assert [e["type"] for e in seen] == ["token.issued"]
    assert seen[0]["data"]["owner_name"] == "k2"

    # Two kinds with different filters: nothing of one leaks through the other's filter.
    mixed = await api.user_token(
        "admin", scopes=["read:events:users!user=k1", "read:events:tokens!user=k2"]
    )
    status, seen = await api.call("GET", "/events", token=mixed)
    assert status == 200, seen
    kinds = {(e["type"], e["data"].get("name") or e["data"].get("owner_name")) for e in seen}
    assert kinds == {("user.created", "k1"), ("token.issued", "k2")}

    # A short page still says where to go on, so a restricted caller pages to the end.
    status, page = await api.call("GET", "/events?limit=1", token=mixed, headers=PAGINATED)
    assert status == 200, page
    assert len(page["items"]) == 1
    assert page["_pagination"]["next"] is not None

    # The stream applies the same limits.
    headers = {"Authorization": f"token {groups_only}"}
    async with api.client.get("/hub/api/events/stream", headers=headers) as response:
        streamed = await read_sse(response, 2)
    assert {e["data"]["type"] for e in streamed} == {"group.created", "group.members_added"}
