"""The sharing API (JupyterHub 5): shares, share codes, the recipients' views, the accept page.

Replies are checked against the ``Share``/``ShareCode`` schemas of JupyterHub's published
spec (tests/contract/jupyterhub-rest-api.yml); what a share gives is checked where it
matters, in the recipient's ``GET /hub/api/user`` (what a server's ``HubOAuth`` reads).
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from events import store
from projections import catalog, rebuild
from tests.integration.api_fixtures import Api
from tests.integration.browser import Browser, running_hub, set_password
from tests.integration.spawn_fixtures import CONFIG as SPAWN_CONFIG
from tests.integration.spawn_fixtures import StartHub
from tests.integration.test_contract import load_spec

pytestmark = pytest.mark.integration

ACCESS = "access:servers!server=alice/"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return load_spec()


def check(spec: dict[str, Any], schema: str, value: Any) -> None:
    """``value`` is valid as the spec's ``schema`` (its $refs resolved within the spec)."""
    document = {**spec, "$ref": f"#/components/schemas/{schema}"}
    jsonschema.validate(value, document)


def check_page(spec: dict[str, Any], schema: str, reply: Any) -> list[Any]:
    assert set(reply) == {"items", "_pagination"}, reply
    check(spec, "Pagination", reply["_pagination"])
    for item in reply["items"]:
        check(spec, schema, item)
    items: list[Any] = reply["items"]
    return items


async def scopes_of(api: Api, token: str) -> list[str]:
    status, reply = await api.call("GET", "/user", token=token)
    assert status == 200, reply
    found: list[str] = reply["scopes"]
    return found


async def event_count(api: Api) -> int:
    async with api.store.pool.acquire() as conn:
        count: int = await conn.fetchval("SELECT count(*) FROM events")
    return count


async def test_grant_read_revoke_and_what_the_recipient_holds(
    api: Api, spec: dict[str, Any]
) -> None:
    admin = await api.user_token("admin")
    await api.user_token("alice")
    bob = await api.user_token("bob")
    carol = await api.user_token("carol")
    assert ACCESS not in await scopes_of(api, bob)

    status, share = await api.call("POST", "/shares/alice/", token=admin, json={"user": "bob"})
    assert status == 200, share
    check(spec, "Share", share)
    assert share["scopes"] == [ACCESS]
    assert share["user"] == {"name": "bob"}
    assert share["group"] is None
    assert share["server"]["user"] == {"name": "alice"}
    assert share["server"]["url"] == "/user/alice/"
    assert ACCESS in await scopes_of(api, bob)
    assert ACCESS not in await scopes_of(api, carol)

    # the owner's list, the server's, and bob's own view (``self`` holds read:users:shares)
    for path, token in (
        ("/shares/alice", admin),
        ("/shares/alice/", admin),
        ("/users/bob/shared", bob),
    ):
        status, reply = await api.call("GET", path, token=token)
        assert status == 200, (path, reply)
        assert [s["user"] for s in check_page(spec, "Share", reply)] == [{"name": "bob"}], path
    status, one = await api.call("GET", "/users/bob/shared/alice/", token=bob)
    assert status == 200, one
    check(spec, "Share", one)
    # carol may not read bob's shares: her token holds read:users:shares only on herself
    status, _ = await api.call("GET", "/users/bob/shared", token=carol)
    assert status == 404

    # a group's share follows its membership at once
    status, _ = await api.call("POST", "/groups/team", json={"users": ["carol"]})
    assert status == 201
    status, share = await api.call(
        "POST",
        "/shares/alice/",
        token=admin,
        json={"group": "team", "scopes": [ACCESS, "read:servers!server=alice/"]},
    )
    assert status == 200, share
    assert share["group"] == {"name": "team"}
    assert share["user"] is None
    assert ACCESS in await scopes_of(api, carol)
    status, reply = await api.call("GET", "/groups/team/shared", token=admin)
    assert status == 200, reply
    assert len(check_page(spec, "Share", reply)) == 1
    status, reply = await api.call("GET", "/users/carol/shared", token=carol)
    assert [s["group"] for s in check_page(spec, "Share", reply)] == [{"name": "team"}]
    status, _ = await api.call("DELETE", "/groups/team/users", json={"users": ["carol"]})
    assert status == 200
    assert ACCESS not in await scopes_of(api, carol)
    status, _ = await api.call("POST", "/groups/team/users", json={"users": ["carol"]})
    assert ACCESS in await scopes_of(api, carol)

    # revoking one scope keeps the rest; revoking all (no scopes) answers {}
    status, left = await api.call(
        "PATCH",
        "/shares/alice/",
        token=admin,
        json={"group": "team", "scopes": ["read:servers!server=alice/"]},
    )
    assert status == 200, left
    assert left["scopes"] == [ACCESS]
    status, left = await api.call("PATCH", "/shares/alice/", token=admin, json={"user": "bob"})
    assert (status, left) == (200, {})
    assert ACCESS not in await scopes_of(api, bob)
    # revoking what is not held is not an error
    status, left = await api.call("PATCH", "/shares/alice/", token=admin, json={"user": "bob"})
    assert (status, left) == (200, {})

    # carol holds no share herself (only through the group): nothing for her to leave; the
    # group's share ends with the DELETE of every share of the server
    status, _ = await api.call("DELETE", "/users/carol/shared/alice/", token=carol)
    assert status == 404
    status, _ = await api.call("DELETE", "/shares/alice/", token=admin)
    assert status == 204
    assert ACCESS not in await scopes_of(api, carol)
    status, reply = await api.call("GET", "/shares/alice", token=admin)
    assert reply["items"] == []
    assert reply["_pagination"]["total"] == 0

    # the recipient leaves
    await api.call("POST", "/shares/alice/", token=admin, json={"user": "bob"})
    status, _ = await api.call("DELETE", "/users/bob/shared/alice/", token=bob)
    assert status == 204
    assert ACCESS not in await scopes_of(api, bob)

    async with api.store.pool.acquire() as conn:
        types = [
            r[0]
            for r in await conn.fetch(
                "SELECT event_type FROM events WHERE event_type LIKE 'share.%'"
                " ORDER BY global_position"
            )
        ]
        left_event = await conn.fetchval(
            "SELECT data FROM events WHERE event_type = 'share.revoked'"
            " ORDER BY global_position DESC LIMIT 1"
        )
    assert types.count("share.granted") == 3
    assert json.loads(left_event)["left"] is True


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"user": "nobody"}, "user"),
        ({"group": "nogroup"}, "group"),
        ({"user": "bob", "group": "team"}, "user, group"),
        ({}, "user, group"),
        ({"user": "bob", "scopes": ["access:servers"]}, "scopes"),
        ({"user": "bob", "scopes": ["access:servers!server=alice/other"]}, "scopes"),
        ({"user": "bob", "scopes": ["access:servers!user=alice"]}, "scopes"),
        ({"user": "bob", "scopes": ["no-such-scope!server=alice/"]}, "scopes"),
        ({"user": "bob", "colour": "red"}, "colour"),
        ({"user": "alice"}, "user"),
    ],
)
async def test_bad_grants_are_refused_naming_the_field_and_write_nothing(
    api: Api, payload: dict[str, Any], field: str
) -> None:
    admin = await api.user_token("admin")
    await api.user_token("alice")
    await api.user_token("bob")
    await api.call("POST", "/groups/team")
    before = await event_count(api)
    status, reply = await api.call("POST", "/shares/alice/", token=admin, json=payload)
    assert status == 400, reply
    assert reply["message"].startswith(field), reply
    assert await event_count(api) == before


async def test_who_may_share(api: Api) -> None:
    alice = await api.user_token("alice")
    await api.user_token("bob")
    # JupyterHub's default user role holds no ``shares``: users share once an admin lets them
    status, reply = await api.call("POST", "/shares/alice/", token=alice, json={"user": "bob"})
    assert status == 403, reply
    status, reply = await api.call("POST", "/shares/alice/nope", json={"user": "bob"})
    assert status == 403  # the service holds no shares scope at all
    admin = await api.user_token("admin")
    status, reply = await api.call("POST", "/shares/alice/nope", token=admin, json={"user": "bob"})
    assert status == 404, reply  # no such named server
    status, reply = await api.call("POST", "/shares/nobody/", token=admin, json={"user": "bob"})
    assert status == 404, reply


async def test_share_codes(api: Api, spec: dict[str, Any]) -> None:
    admin = await api.user_token("admin")
    await api.user_token("alice")
    for bad, field in (({"expires_in": 0}, "expires_in"), ({"expires_in": -5}, "expires_in"),
                       ({"expires_in": 10**9}, "expires_in"), ({"scopes": ["servers"]}, "scopes"),
                       ({"code": "x"}, "code")):  # fmt: skip
        before = await event_count(api)
        status, reply = await api.call("POST", "/share-codes/alice/", token=admin, json=bad)
        assert status == 400, (bad, reply)
        assert reply["message"].startswith(field), reply
        assert await event_count(api) == before

    status, issued = await api.call("POST", "/share-codes/alice/", token=admin, json={})
    assert status == 200, issued
    check(spec, "ShareCode", issued)
    assert issued["id"].startswith("sc_")
    assert issued["scopes"] == [ACCESS]
    assert issued["accept_url"] == f"/hub/accept-share?code={issued['code']}"
    assert issued["exchange_count"] == 0
    assert issued["last_exchanged_at"] is None
    status, listed = await api.call("GET", "/share-codes/alice/", token=admin)
    assert status == 200
    (item,) = listed["items"]
    assert "code" not in item
    assert item["id"] == issued["id"]
    check(spec, "ShareCode", item)
    status, listed = await api.call("GET", "/share-codes/alice", token=admin)
    assert [i["id"] for i in listed["items"]] == [issued["id"]]

    # the code is nowhere but in the reply: not in the log, not in a table
    async with api.store.pool.acquire() as conn:
        log = await conn.fetchval("SELECT string_agg(data::text, ' ') FROM events")
        created = await conn.fetchval(
            "SELECT data FROM events WHERE event_type = 'share.code_created'"
        )
    assert issued["code"] not in log
    assert json.loads(created)["code_id"] == issued["id"]

    status, other = await api.call(
        "POST", "/share-codes/alice/", token=admin, json={"expires_in": 3600}
    )
    status, _ = await api.call("DELETE", f"/share-codes/alice/?id={other['id']}", token=admin)
    assert status == 204
    status, _ = await api.call("DELETE", "/share-codes/alice/?id=sc_999999", token=admin)
    assert status == 404
    status, listed = await api.call("GET", "/share-codes/alice/", token=admin)
    assert [i["id"] for i in listed["items"]] == [issued["id"]]
    status, _ = await api.call("DELETE", f"/share-codes/alice/?code={issued['code']}", token=admin)
    assert status == 204
    status, listed = await api.call("GET", "/share-codes/alice/", token=admin)
    assert listed["items"] == []


async def test_accept_page_exchanges_a_code(event_store: store.EventStore) -> None:
    async with running_hub(event_store) as (api, base):
        admin = await api.user_token("admin")
        await set_password(api, "alice")
        await set_password(api, "bob")
        bob_token = await api.user_token("bob")
        status, issued = await api.call("POST", "/share-codes/alice/", token=admin, json={})
        assert status == 200, issued
        bob = Browser(base)
        try:
            # not signed in: to the login page, and back
            first = await bob.get(issued["accept_url"])
            assert first.status == 302
            assert (first.location or "").startswith("/hub/login?next=")
            signed_in = await bob.login("bob", next_url=(first.location or "").split("next=")[1])
            assert signed_in.status == 302, signed_in.text
            page = await bob.follow(signed_in)
            assert page.status == 200, page.text
            assert ACCESS in page.text
            # the form without its XSRF token is refused, and nothing is accepted
            refused = await bob.post("/hub/accept-share", data={"code": issued["code"]})
            assert refused.status == 403
            accepted = await bob.post(
                "/hub/accept-share", data={"code": issued["code"], "_xsrf": page.hidden("_xsrf")}
            )
            assert accepted.status == 302, accepted.text
            assert accepted.location == "/user/alice/"
            assert ACCESS in await scopes_of(api, bob_token)
            status, listed = await api.call("GET", "/share-codes/alice/", token=admin)
            (code,) = listed["items"]
            assert code["exchange_count"] == 1
            assert code["last_exchanged_at"] is not None
            status, shares = await api.call("GET", "/users/bob/shared", token=bob_token)
            assert [s["server"]["user"]["name"] for s in shares["items"]] == ["alice"]
            # a revoked code is refused
            await api.call("DELETE", "/share-codes/alice/", token=admin)
            gone = await bob.get(issued["accept_url"])
            assert gone.status == 404, gone.text
        finally:
            await bob.close()
        async with api.store.pool.acquire() as conn:
            types = [
                r[0]
                for r in await conn.fetch(
                    "SELECT event_type FROM events WHERE event_type LIKE 'share.%'"
                    " ORDER BY global_position"
                )
            ]
        assert types == [
            "share.code_created",
            "share.code_accepted",
            "share.granted",
            "share.codes_revoked",
        ]


async def test_an_expired_code_is_refused(event_store: store.EventStore) -> None:
    async with running_hub(event_store) as (api, base):
        admin = await api.user_token("admin")
        await set_password(api, "bob")
        await api.user_token("alice")
        status, issued = await api.call(
            "POST", "/share-codes/alice/", token=admin, json={"expires_in": 60}
        )
        assert status == 200
        async with api.store.pool.acquire() as conn:
            # as if a minute had passed
            await conn.execute("UPDATE share_codes SET expires_at = now() - interval '1 s'")
        bob = Browser(base)
        try:
            await bob.login("bob")
            page = await bob.get(issued["accept_url"])
            assert page.status == 404, page.text
        finally:
            await bob.close()
        status, listed = await api.call("GET", "/share-codes/alice/", token=admin)
        assert listed["items"] == []


async def test_the_shares_read_models_rebuild_to_the_live_state(api: Api) -> None:
    admin = await api.user_token("admin")
    await api.user_token("alice")
    await api.user_token("bob")
    await api.call("POST", "/groups/team", json={"users": ["bob"]})
    await api.call("POST", "/shares/alice/", token=admin, json={"user": "bob"})
    await api.call("POST", "/shares/alice/", token=admin, json={"group": "team"})
    await api.call("POST", "/share-codes/alice/", token=admin, json={})
    await api.call("PATCH", "/shares/alice/", token=admin, json={"group": "team"})
    await api.call("POST", "/users/carol")
    await api.call("POST", "/groups/crew")
    await api.call("POST", "/shares/alice/", token=admin, json={"user": "carol"})
    await api.call("POST", "/shares/alice/", token=admin, json={"group": "crew"})
    # a deleted recipient's and a deleted group's shares go with them
    assert (await api.call("DELETE", "/users/carol"))[0] == 204
    assert (await api.call("DELETE", "/groups/crew"))[0] == 204
    status, reply = await api.call("GET", "/shares/alice", token=admin)
    assert [(s["user"], s["group"]) for s in reply["items"]] == [({"name": "bob"}, None)]
    # the audit API shows share events to read:events (the admin holds it)
    status, reply = await api.call("GET", "/events?type_prefix=share.", token=admin)
    assert status == 200, reply
    assert {e["type"] for e in reply} >= {"share.granted", "share.code_created"}
    projection = next(p for p in catalog.ALL if p.name == "shares")
    assert (await rebuild.verify(api.store, projection)).differences == ()


async def test_share_events_have_their_own_part_of_the_log(api: Api) -> None:
    """share.* events are read with read:events or its read:events:shares part, whose
    !user= filter shows the shares of that user's servers and those given to them."""
    admin = await api.user_token("admin")
    await api.user_token("dora")
    await api.user_token("erin")
    await api.user_token("fred")
    assert (await api.call("POST", "/shares/dora/", token=admin, json={"user": "erin"}))[0] == 200

    async def types(*scopes: str) -> list[tuple[str, str]]:
        token = await api.user_token("admin", scopes=list(scopes))
        status, reply = await api.call("GET", "/events?type_prefix=share.", token=token)
        assert status == 200, reply
        return [(e["type"], e["data"]["owner"]) for e in reply]

    assert await types("read:events:shares!user=erin") == [("share.granted", "dora")]
    assert await types("read:events:shares!user=dora") == [("share.granted", "dora")]
    assert await types("read:events:shares!user=fred") == []
    assert await types("read:events:projects") == []
    assert ("share.granted", "dora") in await types("read:events:shares")


async def test_a_named_servers_shares_follow_its_rename_and_go_with_it(
    spawn_hub: StartHub,
) -> None:
    sharer = {"name": "operator-shares", "scopes": ["shares"], "services": ["operator"]}
    hub = await spawn_hub(allow_named_servers=True, roles=[*SPAWN_CONFIG["roles"], sharer])
    bob = await hub.user("bob")
    await hub.user("alice")
    assert (await hub.call("PUT", "/users/alice/servers/nb", json={}))[0] == 201
    status, share = await hub.call("POST", "/shares/alice/nb", json={"user": "bob"})
    assert status == 200, share
    assert share["server"]["url"] == "/user/alice/nb/"
    status, _ = await hub.call("POST", "/share-codes/alice/nb", json={})
    assert status == 200
    status, reply = await hub.call("PATCH", "/users/alice/servers/nb", json={"name": "lab"})
    assert status == 200, reply
    status, reply = await hub.call("GET", "/users/bob/shared", token=bob)
    assert [s["scopes"] for s in reply["items"]] == [["access:servers!server=alice/lab"]]
    status, reply = await hub.call("GET", "/share-codes/alice/lab")
    assert len(reply["items"]) == 1
    status, reply = await hub.call("GET", "/shares/alice/nb")
    assert status == 404  # no such server any more
    status, _ = await hub.call("DELETE", "/users/alice/servers/lab", json={"remove": True})
    assert status == 204
    status, reply = await hub.call("GET", "/users/bob/shared", token=bob)
    assert reply["items"] == []
    status, reply = await hub.call("GET", "/share-codes/alice")
    assert reply["items"] == []
