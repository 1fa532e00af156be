"""The users list built as JSON by PostgreSQL (hub/reads/users.sql, users_page_json; issue 20
part 4) answers what the hub's own rendering of each user answers (``GET /users/{name}``):
roles, groups, admin, timestamps with and without microseconds, the fields each caller's
scopes reveal, and the pages."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from hub import bootstrap
from hub import settings as hub_settings
from tests.integration.api_fixtures import CONFIG, CULLER_TOKEN, SERVICE_TOKEN, Api

pytestmark = pytest.mark.integration

PAGINATION = {"Accept": "application/jupyterhub-pagination+json"}


async def test_the_list_answers_as_each_user_is_rendered(api: Api) -> None:
    for name in ("ann", "bo", "cy"):
        assert (await api.call("POST", f"/users/{name}"))[0] == 201
    assert (await api.call("PATCH", "/users/bo", json={"admin": True}))[0] == 200
    assert (await api.call("POST", "/groups/crew", json={"users": ["ann", "bo"]}))[0] == 201
    # a role granted to ann (and to bo, an admin already) from the configuration
    helper = {"name": "helper", "scopes": ["read:users"], "users": ["ann", "bo"]}
    config = hub_settings.Settings(**(CONFIG | {"roles": [*CONFIG["roles"], helper]}))
    await bootstrap.reconcile(api.store, config)
    # activity on a whole second (no microseconds: written without a fraction), and not
    for name, stamp in (("ann", "2026-01-02T03:04:05Z"), ("bo", "2026-01-02T03:04:05.5Z")):
        reply = await api.call("POST", f"/users/{name}/activity", json={"last_activity": stamp})
        assert reply[0] == 200, reply
    for token in (None, CULLER_TOKEN):  # the service (admin:users), the culler (fewer fields)
        kwargs = {} if token is None else {"token": token}
        status, listed = await api.call("GET", "/users", **kwargs)
        assert status == 200, listed
        by_name = {item["name"]: item for item in listed}
        for name, item in by_name.items():
            status, one = await api.call("GET", f"/users/{name}", **kwargs)
            assert status == 200, one
            assert item == one, name
    status, listed = await api.call("GET", "/users")
    ann = next(item for item in listed if item["name"] == "ann")
    assert ann["last_activity"] == "2026-01-02T03:04:05Z"
    assert ann["groups"] == ["crew"]
    assert ann["roles"] == ["helper", "user"]
    bo = next(item for item in listed if item["name"] == "bo")
    assert bo["last_activity"] == "2026-01-02T03:04:05.500000Z"
    assert bo["roles"] == ["admin", "helper", "user"]
    cy = next(item for item in listed if item["name"] == "cy")
    assert (cy["roles"], cy["groups"], cy["last_activity"]) == (["user"], [], None)


async def test_pages_follow_one_another_to_the_end(api: Api) -> None:
    names = [f"p{i:02d}" for i in range(7)]
    assert (await api.call("POST", "/users", json={"usernames": names}))[0] == 201
    seen: list[str] = []
    status, page = await api.call("GET", "/users?limit=3", headers=PAGINATION)
    assert status == 200, page
    total = page["_pagination"]["total"]
    while True:
        seen += [item["name"] for item in page["items"]]
        following = page["_pagination"]["next"]
        if following is None:
            break
        assert following["url"].startswith("http")
        query = following["url"].split("/hub/api/users", 1)[1]
        status, page = await api.call("GET", f"/users{query}", headers=PAGINATION)
        assert status == 200, page
    assert len(seen) == total == len(set(seen))
    assert [n for n in seen if n in names] == names  # creation order
    status, beyond = await api.call("GET", f"/users?offset={total}", headers=PAGINATION)
    assert (status, beyond["items"], beyond["_pagination"]["next"]) == (200, [], None)


async def test_the_lists_bytes_are_the_hubs_own_encoding_of_each_user(api: Api) -> None:
    # PostgreSQL writes each model as text, key by key (users_page_json): the same keys, in
    # the same order, with the same separators and string escapes as json.dumps with
    # ensure_ascii=False of the data the hub renders for each user; the hidden keys of a
    # narrower caller (the culler) left out alike. The hub's own responses (json_response)
    # escape non-ASCII characters instead (ensure_ascii=True): other bytes, same JSON data.
    names = ["plain", "zoë", 'quo"te', "back\\slash"]
    for name in names:
        assert (await api.call("POST", f"/users/{quote(name, safe='')}"))[0] == 201
    assert (await api.call("PATCH", "/users/plain", json={"admin": True}))[0] == 200
    for token in (SERVICE_TOKEN, CULLER_TOKEN):
        headers = {"Authorization": f"token {token}"}
        response = await api.client.get("/hub/api/users", headers=headers)
        assert response.status == 200
        raw = await response.read()
        expected = []
        for item in json.loads(raw):
            status, one = await api.call("GET", f"/users/{quote(item['name'], safe='')}", token)
            assert status == 200, one
            expected.append(one)
        assert {item["name"] for item in expected} >= set(names)
        assert raw == json.dumps(expected, ensure_ascii=False).encode()
