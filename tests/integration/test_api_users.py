"""The users, groups and tokens REST API against real PostgreSQL, JupyterHub's contract."""

from __future__ import annotations

import io
from typing import Any

import asyncpg
import pytest

from hub.api import models as api_models
from tests.integration.api_fixtures import SERVICE_TOKEN, Api

pytestmark = pytest.mark.integration

PAGINATED = {"Accept": "application/jupyterhub-pagination+json"}


async def test_create_get_modify_delete_a_user(api: Api, pool: asyncpg.Pool[Any]) -> None:
    status, created = await api.call("POST", "/users", json={"usernames": ["Ada", "bob"]})
    assert status == 201
    assert [u["name"] for u in created] == ["ada", "bob"]  # names are normalised to lower case
    assert created[0]["kind"] == "user"
    assert created[0]["admin"] is False
    assert created[0]["roles"] == ["user"]
    assert created[0]["created"].endswith("Z")

    status, user = await api.call("GET", "/users/ada")
    assert status == 200
    assert set(user) >= {
        "kind",
        "name",
        "admin",
        "roles",
        "groups",
        "server",
        "pending",
        "created",
        "last_activity",
    }

    status, user = await api.call("PATCH", "/users/ada", json={"name": "lovelace", "admin": True})
    assert status == 200
    assert (user["name"], user["admin"]) == ("lovelace", True)
    assert "admin" in user["roles"]
    assert (await api.call("GET", "/users/ada"))[0] == 404

    assert (await api.call("DELETE", "/users/lovelace"))[0] == 204
    assert (await api.call("GET", "/users/lovelace"))[0] == 404
    types = [
        r[0]
        for r in await pool.fetch(
            "SELECT event_type FROM events WHERE stream_id LIKE 'user-%' ORDER BY global_position"
        )
    ]
    assert types[-4:] == ["user.created", "user.renamed", "user.admin_changed", "user.deleted"]
    actors = {
        r[0] for r in await pool.fetch("SELECT actor FROM events WHERE event_type = 'user.renamed'")
    }
    assert actors == {"service:bench"}


async def test_conflicts(api: Api) -> None:
    await api.call("POST", "/users", json={"usernames": ["x1", "x2"]})
    status, payload = await api.call("POST", "/users", json={"usernames": ["x1", "x2"]})
    assert status == 409
    assert payload == {"status": 409, "message": "All 2 users already exist"}
    status, created = await api.call("POST", "/users", json={"usernames": ["x1", "x3"]})
    assert status == 201
    assert [u["name"] for u in created] == ["x3"]
    assert (await api.call("POST", "/users/x1"))[0] == 409
    status, payload = await api.call("PATCH", "/users/x1", json={"name": "x2"})
    assert status == 400
    assert "already exists" in payload["message"]


async def test_list_users_paginated_with_absolute_next(api: Api) -> None:
    await api.call("POST", "/users", json={"usernames": [f"p{i:02d}" for i in range(7)]})
    status, page = await api.call("GET", "/users?limit=3&name_filter=p0", headers=PAGINATED)
    assert status == 200
    assert [u["name"] for u in page["items"]] == ["p00", "p01", "p02"]
    meta = page["_pagination"]
    assert (meta["offset"], meta["limit"], meta["total"]) == (0, 3, 7)
    assert meta["next"]["url"].startswith("http://")
    assert "name_filter=p0" in meta["next"]["url"]
    names = [u["name"] for u in page["items"]]
    url = meta["next"]["url"]
    while url:
        response = await api.client.session.get(
            url, headers={**PAGINATED, "Authorization": f"token {SERVICE_TOKEN}"}
        )
        body = await response.json()
        names += [u["name"] for u in body["items"]]
        url = body["_pagination"]["next"]["url"] if body["_pagination"]["next"] else None
    assert names == [f"p{i:02d}" for i in range(7)]

    status, bare = await api.call("GET", "/users?name_filter=p0")
    assert status == 200
    assert isinstance(bare, list)
    assert len(bare) == 7

    status, inactive = await api.call("GET", "/users?state=inactive&name_filter=p0")
    assert len(inactive) == 7
    status, ready = await api.call("GET", "/users?state=ready")
    assert (status, ready) == (200, [])


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("state=running", "state must be one of"),
        ("sort=bogus", "sort must be one of"),
        ("limit=-1", "limit must be a non-negative integer"),
        ("offset=abc", "offset must be a non-negative integer"),
    ],
)
async def test_list_users_bad_parameters(api: Api, query: str, message: str) -> None:
    status, payload = await api.call("GET", f"/users?{query}")
    assert status == 400
    assert message in payload["message"]


@pytest.mark.parametrize(
    ("method", "path", "body", "message"),
    [
        ("POST", "/users", "{not json", "not valid JSON"),
        ("POST", "/users", [1, 2], "must be a JSON object"),
        ("POST", "/users", {"usernames": "alice"}, "usernames"),
        ("POST", "/users", {"usernames": []}, "usernames"),
        ("POST", "/users", {"usernames": ["a/b"]}, "usernames.0"),
        ("POST", "/users", {"usernames": ["has space"]}, "usernames.0"),
        ("POST", "/users", {"usernames": ["ok"], "extra": 1}, "extra: unknown field"),
        ("POST", "/users", {"usernames": ["ok"], "admin": "yes"}, "admin"),
        ("POST", "/users", {"usernames": ["x" * 256]}, "usernames.0"),
        ("PATCH", "/users/admin", {"name": ".."}, "name"),
        ("PATCH", "/users/admin", {"groups": ["g"]}, "groups: unknown field"),
        ("POST", "/users/admin/activity", {}, "last_activity or servers is required"),
        ("POST", "/users/admin/activity", {"last_activity": "yesterday"}, "last_activity"),
        ("POST", "/users/admin/tokens", {"expires_in": 0}, "expires_in"),
        ("POST", "/users/admin/tokens", {"expires_in": 10**12}, "expires_in: Input should be"),
        ("POST", "/users/admin/tokens", {"scopes": ["no:such"]}, "does not exist"),
        ("POST", "/groups", {"groups": ["g1"], "users": ["nobody"]}, "No such user(s): nobody"),
    ],
)
async def test_bad_input_is_refused_with_the_field_named_and_nothing_written(
    api: Api, pool: asyncpg.Pool[Any], method: str, path: str, body: Any, message: str
) -> None:
    before = await pool.fetchval("SELECT count(*) FROM events")
    kwargs = {"data": body} if isinstance(body, str) else {"json": body}
    status, payload = await api.call(method, path, **kwargs)
    assert status == 400, payload
    assert payload["status"] == 400
    assert message in payload["message"]
    assert await pool.fetchval("SELECT count(*) FROM events") == before


async def test_oversized_body_is_refused(api: Api) -> None:
    status, payload = await api.call("POST", "/users", data=io.BytesIO(b"x" * (2 * 1024 * 1024)))
    assert status == 413
    assert payload["status"] == 413


async def test_activity_moves_forward_only(api: Api) -> None:
    await api.call("POST", "/users/act")
    later, earlier = "2026-11-25T10:00:00Z", "2026-11-25T09:00:00Z"
    assert (await api.call("POST", "/users/act/activity", json={"last_activity": later}))[0] == 200
    assert (await api.call("POST", "/users/act/activity", json={"last_activity": earlier}))[
        0
    ] == 200
    status, user = await api.call("GET", "/users/act")
    assert status == 200, user
    assert user["last_activity"] == "2026-11-25T10:00:00Z"
    status, payload = await api.call(
        "POST", "/users/act/activity", json={"last_activity": "2999-01-01T00:00:00Z"}
    )
    assert status == 400
    assert "future" in payload["message"]
    status, payload = await api.call(
        "POST",
        "/users/act/activity",
        json={"servers": {"": {"last_activity": "2026-11-25T11:00:00Z"}}},
    )
    assert (status, payload["message"]) == (400, "No such server: ''")


async def test_groups(api: Api, pool: asyncpg.Pool[Any]) -> None:
    await api.call("POST", "/users", json={"usernames": ["m1", "m2", "m3"]})
    status, created = await api.call("POST", "/groups", json={"groups": ["team"], "users": ["m1"]})
    assert status == 201
    assert created == [
        {"kind": "group", "name": "team", "roles": [], "users": ["m1"], "properties": {}}
    ]
    status, group = await api.call("POST", "/groups/team/users", json={"users": ["m2", "m3"]})
    assert (status, group["users"]) == (200, ["m1", "m2", "m3"])
    status, group = await api.call("DELETE", "/groups/team/users", json={"users": ["m1"]})
    assert (status, group["users"]) == (200, ["m2", "m3"])
    status, group = await api.call("PUT", "/groups/team/properties", json={"course": "cs101"})
    assert (status, group["properties"]) == (200, {"course": "cs101"})
    status, user = await api.call("GET", "/users/m2")
    assert status == 200, user
    assert user["groups"] == ["team"]
    assert (await api.call("POST", "/groups/team"))[0] == 409
    status, page = await api.call("GET", "/groups", headers=PAGINATED)
    assert status == 200, page
    assert [g["name"] for g in page["items"]] == ["team"]

    # Who was in the team, from the log alone.
    rows = await pool.fetch(
        "SELECT event_type, data->'users' AS users FROM events"
        " WHERE event_type LIKE 'group.members_%' ORDER BY global_position"
    )
    assert [(r[0], r[1]) for r in rows] == [
        ("group.members_added", '["m1"]'),
        ("group.members_added", '["m2", "m3"]'),
        ("group.members_removed", '["m1"]'),
    ]
    await api.call("DELETE", "/users/m2")
    status, group = await api.call("GET", "/groups/team")
    assert status == 200, group
    assert group["users"] == ["m3"]
    assert (await api.call("DELETE", "/groups/team"))[0] == 204
    assert (await api.call("GET", "/groups/team"))[0] == 404


async def test_tokens(api: Api, pool: asyncpg.Pool[Any]) -> None:
    token = await api.user_token("tok", note="laptop", expires_in=3600)
    status, me = await api.call("GET", "/user", token=token)
    assert status == 200
    assert me["name"] == "tok"
    assert "read:users!user=tok" in me["scopes"]
    assert "read:users:name!user=tok" in me["scopes"]

    status, listed = await api.call("GET", "/users/tok/tokens", token=token)
    assert status == 200
    [entry] = listed["api_tokens"]
    assert (entry["note"], entry["kind"], entry["user"]) == ("laptop", "api_token", "tok")
    assert entry["expires_at"].endswith("Z")
    assert "token" not in entry

    # A narrower token: only what was asked for (plus the identify scopes).
    status, narrow = await api.call(
        "POST", "/users/tok/tokens", token=token, json={"scopes": ["read:users!user=tok"]}
    )
    assert status == 201
    status, me = await api.call("GET", "/user", token=narrow["token"])
    assert status == 200, me
    assert "tokens!user=tok" not in me["scopes"]
    assert (await api.call("GET", "/users/tok/tokens", token=narrow["token"]))[0] == 403

    # Revoked: stops working at once.
    assert (await api.call("DELETE", f"/users/tok/tokens/{entry['id']}", token=token))[0] == 204
    status, payload = await api.call("GET", "/user", token=token)
    assert (status, payload["message"]) == (403, "Missing or invalid credentials.")

    # Expired: stops working at once.
    expired = await api.user_token("tok2", expires_in=3600)
    await pool.execute("UPDATE tokens SET expires_at = now() - interval '1 second'")
    assert (await api.call("GET", "/user", token=expired))[0] == 403

    # The token never enters the log; only its hash is kept, outside the log.
    log = "\n".join(
        r[0] for r in await pool.fetch("SELECT data::text || metadata::text FROM events")
    )
    assert narrow["token"] not in log
    assert expired not in log
    assert SERVICE_TOKEN not in log


async def test_a_new_tokens_answer_is_the_model_it_reads_as_afterwards(api: Api) -> None:
    """The answer to ``POST /users/{name}/tokens`` is built from what was written (not read
    back): it must be the token's model as ``GET`` then shows it, the secret aside."""
    await api.user_token("issued")  # creates the user
    for body in (
        {},
        {"note": "n", "expires_in": 3600},
        {"scopes": ["read:users!user=issued", "inherit"]},
        {"scopes": ["read:users!user=issued"], "expires_in": 60},
    ):
        status, made = await api.call("POST", "/users/issued/tokens", json=body)
        assert status == 201, made
        secret = made.pop("token")
        status, read = await api.call("GET", f"/users/issued/tokens/{made['id']}")
        assert (status, made) == (200, read), body
        assert (await api.call("GET", "/user", token=secret))[0] == 200


async def test_a_refused_token_leaves_no_hash_behind(api: Api, pool: asyncpg.Pool[Any]) -> None:
    # The hash is stored with the token's event, after the request is judged: a refused
    # request stores none.
    mine = await api.user_token("keeper")
    await api.user_token("other")
    before = await pool.fetchval("SELECT count(*) FROM token_secrets")
    refused = [
        await api.call("POST", "/users/nobody/tokens", json={}),
        await api.call("POST", "/users/other/tokens", token=mine, json={}),
        await api.call(
            "POST", "/users/keeper/tokens", token=mine, json={"scopes": ["admin:users"]}
        ),
    ]
    assert [status for status, _ in refused] == [403, 403, 400], refused
    assert await pool.fetchval("SELECT count(*) FROM token_secrets") == before
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM token_secrets LEFT JOIN tokens USING (token_id)"
            " WHERE tokens.token_id IS NULL"
        )
        == 0
    )


async def test_a_user_cannot_grant_itself_more_than_it_holds(api: Api) -> None:
    token = await api.user_token("modest")
    status, payload = await api.call(
        "POST", "/users/modest/tokens", token=token, json={"scopes": ["admin:users"]}
    )
    assert status == 400
    assert "Not assigning requested scopes" in payload["message"]


async def test_authorization_header_forms(api: Api) -> None:
    for header in (f"token {SERVICE_TOKEN}", f"Bearer {SERVICE_TOKEN}", f"TOKEN {SERVICE_TOKEN}"):
        response = await api.client.get("/hub/api/user", headers={"Authorization": header})
        assert response.status == 200, header
    for header in (
        "",
        "token",
        f"basic {SERVICE_TOKEN}",
        "token wrong",
        f"token {SERVICE_TOKEN} x",
    ):
        response = await api.client.get("/hub/api/user", headers={"Authorization": header})
        assert response.status == 403, header
    response = await api.client.get(f"/hub/api/user?token={SERVICE_TOKEN}")
    assert response.status == 403  # the Hub API does not take tokens in the URL


async def test_info_and_openapi(api: Api) -> None:
    status, info = await api.call("GET", "/info")
    assert status == 200
    assert info["version"] == "6.1.1"
    api_models.Info.model_validate(info)
    status, spec = await api.call("GET", "/openapi.json", token=None)
    assert status == 200
    assert spec["openapi"].startswith("3.")
    schemas = spec["components"]["schemas"]
    create = schemas["CreateUsers"]
    assert create["properties"]["usernames"]["type"] == "array"
    assert create["additionalProperties"] is False
    listing = spec["paths"]["/users"]["get"]["responses"]["200"]["content"]
    assert listing["application/json"]["schema"]["items"] == {"$ref": "#/components/schemas/User"}
    assert "_pagination" in schemas["UserPage"]["properties"]
    for name in ("User", "Group", "Token", "NewToken", "Whoami", "Error"):
        assert name in schemas


async def test_replies_match_the_documented_models(api: Api) -> None:
    """The OpenAPI document's reply models accept what the handlers really send."""
    token = await api.user_token("doc", note="n")
    await api.call("POST", "/groups", json={"groups": ["docs"], "users": ["doc"]})
    checks = [
        ("GET", "/", None, api_models.Version),
        ("GET", "/user", token, api_models.Whoami),
        ("GET", "/user", SERVICE_TOKEN, api_models.Whoami),
        ("GET", "/users/doc", SERVICE_TOKEN, api_models.User),
        ("GET", "/users/doc", token, api_models.User),
        ("GET", "/users/doc/tokens", token, api_models.Tokens),
        ("GET", "/groups/docs", SERVICE_TOKEN, api_models.Group),
    ]
    for method, path, caller, model in checks:
        status, payload = await api.call(method, path, token=caller)
        assert status == 200, (path, payload)
        model.model_validate(payload)
    status, page = await api.call("GET", "/users?limit=1", headers=PAGINATED)
    assert status == 200, page
    api_models.UserPage.model_validate(page)
    status, new = await api.call("POST", "/users/doc/tokens", json={})
    assert status == 201, new
    api_models.NewToken.model_validate(new)
    status, error = await api.call("GET", "/users/nobody")
    assert status == 404, error
    api_models.Error.model_validate(error)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/groups/g/properties", '{"a": "x\\u0000"}'),
        ("POST", "/users/admin/tokens", '{"note": "x\\u0000"}'),
        ("GET", "/users?name_filter=a%00", None),
        ("GET", "/users/a%00", None),
    ],
)
async def test_nul_characters_are_refused_not_crashed_on(
    api: Api, pool: asyncpg.Pool[Any], method: str, path: str, body: str | None
) -> None:
    await api.call("POST", "/groups/g")
    before = await pool.fetchval("SELECT count(*) FROM events")
    status, payload = await api.call(method, path, data=body)
    assert status == 400
    assert "NUL" in payload["message"]
    assert await pool.fetchval("SELECT count(*) FROM events") == before


async def test_sorting_and_default_token_notes(api: Api) -> None:
    await api.call("POST", "/users", json={"usernames": ["s-b", "s-a", "s-c"]})
    status, by_id = await api.call("GET", "/users?name_filter=s-")
    assert status == 200, by_id
    assert [u["name"] for u in by_id] == ["s-b", "s-a", "s-c"]
    status, by_name = await api.call("GET", "/users?name_filter=s-&sort=-name")
    assert status == 200, by_name
    assert [u["name"] for u in by_name] == ["s-c", "s-b", "s-a"]
    await api.call("POST", "/users/s-c/activity", json={"last_activity": "2026-11-20T00:00:00Z"})
    await api.call("POST", "/users/s-a/activity", json={"last_activity": "2026-11-21T00:00:00Z"})
    status, by_activity = await api.call("GET", "/users?name_filter=s-&sort=-last_activity")
    assert status == 200, by_activity
    assert [u["name"] for u in by_activity] == ["s-a", "s-c", "s-b"]
    status, first = await api.call("GET", "/users?name_filter=s-&sort=last_activity&limit=1")
    assert status == 200, first
    assert [u["name"] for u in first] == ["s-c"]

    status, token = await api.call("POST", "/users/s-a/tokens", json={})
    assert (status, token["note"]) == (201, "Requested via api by service bench")
    status, own = await api.call("POST", "/users/s-a/tokens", token=token["token"], json={})
    assert (status, own["note"]) == (201, "Requested via api")
    status, payload = await api.call("POST", "/users/nobody/tokens", json={})
    assert (status, payload["message"]) == (
        403,
        "User nobody not found or no permissions to generate tokens",
    )
