"""Every endpoint against every default role: 403 where the scope is missing, 404 where the
scope is held but not on that resource (existence does not leak), success otherwise.

Also: configuration is reconciled into events idempotently, and ``chronohub token``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import asyncpg
import pytest

from events import store
from hub import bootstrap
from hub import settings as hub_settings
from projections import catalog, rebuild
from tests.integration.api_fixtures import CONFIG, Api

pytestmark = pytest.mark.integration

# The callers, each a token of one default role (the "token" role is inherit: a user's own).
#   admin  - the admin user's token (admin role)
#   user   - alice's token (user role: self)
#   server - alice's server token (server role: users:activity!user, access:servers!server)
#   anon   - no token
# Each row: method, path, body, expected status per caller. Alice acts on herself and on bob.
MATRIX: list[tuple[str, str, Any, dict[str, int]]] = [
    ("GET", "/", None, {"admin": 200, "user": 200, "server": 200, "anon": 200}),
    ("GET", "/info", None, {"admin": 200, "user": 403, "server": 403, "anon": 403}),
    ("GET", "/user", None, {"admin": 200, "user": 200, "server": 200, "anon": 403}),
    ("GET", "/users", None, {"admin": 200, "user": 403, "server": 403, "anon": 403}),
    (
        "POST",
        "/users",
        {"usernames": ["newcomer"]},
        {"admin": 201, "user": 403, "server": 403, "anon": 403},
    ),
    ("GET", "/users/alice", None, {"admin": 200, "user": 200, "server": 200, "anon": 403}),
    ("GET", "/users/bob", None, {"admin": 200, "user": 404, "server": 404, "anon": 403}),
    ("POST", "/users/carol", None, {"admin": 201, "user": 403, "server": 403, "anon": 403}),
    (
        "PATCH",
        "/users/bob",
        {"admin": False},
        {"admin": 200, "user": 403, "server": 403, "anon": 403},
    ),
    (
        "POST",
        "/users/alice/activity",
        {"last_activity": "2026-11-25T10:00:00Z"},
        {"admin": 200, "user": 200, "server": 200, "anon": 403},
    ),
    (
        "POST",
        "/users/bob/activity",
        {"last_activity": "2026-11-25T10:00:00Z"},
        {"admin": 200, "user": 404, "server": 404, "anon": 403},
    ),
    ("GET", "/users/alice/tokens", None, {"admin": 200, "user": 200, "server": 403, "anon": 403}),
    ("GET", "/users/bob/tokens", None, {"admin": 200, "user": 404, "server": 403, "anon": 403}),
    (
        "POST",
        "/users/alice/tokens",
        {"note": "matrix"},
        {"admin": 201, "user": 201, "server": 403, "anon": 403},
    ),
    (
        "POST",
        "/users/bob/tokens",
        {"note": "matrix"},
        # JupyterHub answers 403 "not found or no permissions" here, not 404
        {"admin": 201, "user": 403, "server": 403, "anon": 403},
    ),
    ("GET", "/groups", None, {"admin": 200, "user": 403, "server": 403, "anon": 403}),
    (
        "POST",
        "/groups",
        {"groups": ["newteam"]},
        {"admin": 201, "user": 403, "server": 403, "anon": 403},
    ),
    ("GET", "/groups/team", None, {"admin": 200, "user": 403, "server": 403, "anon": 403}),
    ("POST", "/groups/other", None, {"admin": 201, "user": 403, "server": 403, "anon": 403}),
    (
        "POST",
        "/groups/team/users",
        {"users": ["bob"]},
        {"admin": 200, "user": 403, "server": 403, "anon": 403},
    ),
    (
        "PUT",
        "/groups/team/properties",
        {"k": 1},
        {"admin": 200, "user": 403, "server": 403, "anon": 403},
    ),
    # sharing: ``self`` reads one's own shares; sharing needs ``shares`` (admins only by default)
    ("GET", "/shares/alice", None, {"admin": 200, "user": 200, "server": 403, "anon": 403}),
    ("GET", "/shares/bob", None, {"admin": 200, "user": 404, "server": 403, "anon": 403}),
    (
        "POST",
        "/shares/alice/",
        {"user": "bob"},
        {"admin": 200, "user": 403, "server": 403, "anon": 403},
    ),
    ("GET", "/share-codes/alice/", None, {"admin": 200, "user": 200, "server": 403, "anon": 403}),
    ("GET", "/users/alice/shared", None, {"admin": 200, "user": 200, "server": 403, "anon": 403}),
    ("GET", "/users/bob/shared", None, {"admin": 200, "user": 404, "server": 403, "anon": 403}),
    ("GET", "/groups/team/shared", None, {"admin": 200, "user": 403, "server": 403, "anon": 403}),
    ("DELETE", "/groups/team", None, {"admin": 204, "user": 403, "server": 403, "anon": 403}),
    ("DELETE", "/users/bob", None, {"admin": 204, "user": 403, "server": 403, "anon": 403}),
]

CALLERS = ("admin", "user", "server", "anon")


async def tokens_for_roles(api: Api) -> dict[str, str | None]:
    await api.call("POST", "/users", json={"usernames": ["alice", "bob"]})
    await api.call("POST", "/groups", json={"groups": ["team"], "users": ["alice"]})
    return {
        "admin": await api.user_token("admin"),
        "user": await api.user_token("alice"),
        "server": await api.user_token(
            "alice", scopes=["users:activity!user=alice", "access:servers!server=alice/"]
        ),
        "anon": None,
    }


@pytest.mark.parametrize("caller", CALLERS)
async def test_every_endpoint_against_every_default_role(api: Api, caller: str) -> None:
    tokens = await tokens_for_roles(api)
    failures = []
    for method, path, body, expected in MATRIX:
        kwargs = {"json": body} if body is not None else {}
        status, payload = await api.call(method, path, token=tokens[caller], **kwargs)
        if status != expected[caller]:
            failures.append(f"{method} {path}: {status} (expected {expected[caller]}) {payload}")
        elif status >= 400:
            assert payload["status"] == status
    assert failures == []


async def test_a_404_for_a_missing_user_and_a_forbidden_one_look_the_same(api: Api) -> None:
    tokens = await tokens_for_roles(api)
    hidden = await api.call("GET", "/users/bob", token=tokens["user"])
    missing = await api.call("GET", "/users/nobody", token=tokens["user"])
    assert (
        hidden
        == missing
        == (404, {"status": 404, "message": "No access to resources or resources not found"})
    )


async def test_fields_follow_the_scopes(api: Api) -> None:
    tokens = await tokens_for_roles(api)
    status, by_server = await api.call("GET", "/users/alice", token=tokens["server"])
    assert status == 200, by_server
    # users:activity (the server role) plus the identify scopes every token carries
    assert set(by_server) == {"kind", "name", "admin", "user_info", "groups", "last_activity"}
    status, by_self = await api.call("GET", "/users/alice", token=tokens["user"])
    assert status == 200, by_self
    assert {"admin", "groups", "created", "servers"} <= set(by_self)
    assert "auth_state" not in by_self


async def test_list_scopes_with_group_filters_restrict_rows(api: Api) -> None:
    await api.call("POST", "/users", json={"usernames": ["in1", "in2", "out1"]})
    await api.call("POST", "/groups", json={"groups": ["g"], "users": ["in1", "in2"]})
    token = await api.user_token("admin", scopes=["list:users!group=g", "read:users!group=g"])
    status, users = await api.call("GET", "/users", token=token)
    assert status == 200
    assert sorted(u["name"] for u in users) == ["in1", "in2"]
    assert (await api.call("GET", "/users/out1", token=token))[0] == 404
    assert (await api.call("GET", "/users/in1", token=token))[0] == 200


async def test_custom_roles_from_config_grant_their_scopes(api: Api) -> None:
    from tests.integration.api_fixtures import CULLER_TOKEN

    status, me = await api.call("GET", "/user", token=CULLER_TOKEN)
    assert status == 200
    assert me["kind"] == "service"
    assert me["roles"] == ["culler-role"]
    assert {"list:users", "read:users:activity", "read:servers", "delete:servers"} <= set(
        me["scopes"]
    )
    assert (await api.call("GET", "/users", token=CULLER_TOKEN))[0] == 200
    assert (await api.call("POST", "/users/x", token=CULLER_TOKEN))[0] == 403


async def test_a_configured_user_role_extends_every_users_scopes(
    event_store: store.EventStore,
) -> None:
    """JupyterHub's configuration may extend the ``user`` role every user holds (e.g. to let
    everyone open a service); its scopes count for tokens and browser sessions alike."""
    from tests.integration.browser import running_hub

    user_role = {
        "name": "user",
        "scopes": ["self", "write:collab!user", "admin:projects!user", "list:groups"],
    }
    async with running_hub(event_store, roles=[*CONFIG["roles"], user_role]) as (api, _):
        token = await api.user_token("alice")
        status, me = await api.call("GET", "/user", token=token)
        assert status == 200
        assert "list:groups" in me["scopes"]
        assert (await api.call("GET", "/groups", token=token))[0] == 200
        assert (await api.call("GET", "/users", token=token))[0] == 403  # nothing more


async def count_events(pool: asyncpg.Pool[Any]) -> int:
    return await pool.fetchval("SELECT count(*) FROM events")


async def test_startup_reconciliation_is_idempotent(
    event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    config = hub_settings.Settings(**CONFIG)
    first = await bootstrap.reconcile(event_store, config)
    assert first > 0
    assert await bootstrap.reconcile(event_store, config) == 0
    assert await count_events(pool) == first

    # A changed configuration appends just the difference.
    changed = dict(CONFIG)
    changed["admin_users"] = ["admin", "second"]
    changed["roles"] = [CONFIG["roles"][1]]  # bench-role dropped
    config2 = hub_settings.Settings(**changed)
    assert await bootstrap.reconcile(event_store, config2) > 0
    assert await bootstrap.reconcile(event_store, config2) == 0
    assert await pool.fetchval("SELECT count(*) FROM roles WHERE name = 'bench-role'") == 0
    assert await pool.fetchval("SELECT admin FROM users WHERE name = 'second'") is True

    # A service dropped from the configuration takes its tokens and role grants with it,
    # and every projection still equals its rebuild (each handles that event on its own).
    dropped = dict(changed)
    dropped["services"] = [CONFIG["services"][0]]
    dropped["roles"] = []
    assert await bootstrap.reconcile(event_store, hub_settings.Settings(**dropped)) > 0
    assert await pool.fetchval("SELECT count(*) FROM tokens WHERE service = 'culler'") == 0
    assert await pool.fetchval("SELECT count(*) FROM role_grants") == 0
    for projection in catalog.ALL:
        assert (await rebuild.verify(event_store, projection)).differences == (), projection.name


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"roles": [{"name": "bad-role", "scopes": ["read:nothing"]}]}, "read:nothing"),
        ({"roles": [{"name": "bad-role", "scopes": ["read:users!team=x"]}]}, "read:users!team=x"),
        ({"roles": [{"name": "x", "scopes": ["read:users"]}]}, "invalid role name"),
        ({"roles": [{"name": "ok-role", "scopes": [], "services": ["ghost"]}]}, "ghost"),
        (
            {"services": [*CONFIG["services"], {"name": "short", "api_token": "abc"}]},
            "too short",
        ),
    ],
)
async def test_bad_configuration_is_refused_at_startup(
    event_store: store.EventStore, pool: asyncpg.Pool[Any], override: dict[str, Any], message: str
) -> None:
    config = hub_settings.Settings(**{**CONFIG, **override})
    with pytest.raises(bootstrap.ConfigurationError, match=message):
        await bootstrap.reconcile(event_store, config)
    assert await count_events(pool) == 0


async def test_token_cli(db_url: str, api: Api) -> None:
    await api.call("POST", "/users/clara")
    env = {**os.environ, "CHRONOHUB_DATABASE_URL": db_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub.cli",
        "token",
        "clara",
        "--note",
        "cli",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    token = out.decode().strip()
    assert len(token) == 32
    status, me = await api.call("GET", "/user", token=token)
    assert (status, me["name"]) == (200, "clara")

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub.cli",
        "token",
        "nobody",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert "No such user: nobody" in err.decode()
