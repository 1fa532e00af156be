"""The pure parts of spawning and routing: decisions, names, the environment contract, the
proxy's route matching and the CHP adapter's sync plan."""

from __future__ import annotations

import json

import pytest

from hub.proxy import chp, table
from hub.servers import rules as server_rules
from hub.servers import spawner

LIMITS = server_rules.Limits(
    allow_named=True, named_limit=2, named_count=0, spawn_limit=3, pending_spawns=0
)


@pytest.mark.parametrize(
    ("state", "decision"),
    [(None, "spawn"), ("stopped", "spawn"), ("failed", "spawn"), ("defined", "spawn"),
     ("spawning", "pending"), ("started", "pending")],
)  # fmt: skip
def test_spawn_decisions(state: str | None, decision: str) -> None:
    assert server_rules.decide_spawn(state, "ann", "", LIMITS) == decision


@pytest.mark.parametrize(
    ("state", "server_name", "limits", "status", "message"),
    [
        ("ready", "", LIMITS, 400, "ann's server is already running"),
        ("stopping", "lab", LIMITS, 400, "ann/lab is pending stop, please wait"),
        (
            None,
            "lab",
            server_rules.Limits(False, 0, 0, 0, 0),
            400,
            "Named servers are not enabled.",
        ),
        (None, "c", server_rules.Limits(True, 2, 2, 0, 0), 400, "maximum of 2 named servers"),
        (None, "", server_rules.Limits(True, 0, 0, 3, 3), 429, "Too many servers starting (3"),
    ],
)
def test_spawn_refusals_are_policy_errors(
    state: str | None, server_name: str, limits: server_rules.Limits, status: int, message: str
) -> None:
    with pytest.raises(spawner.PolicyError, match=message.replace("(", r"\(")) as caught:
        server_rules.decide_spawn(state, "ann", server_name, limits)
    assert caught.value.status == status
    assert caught.value.kind == "policy"


def test_a_named_server_that_exists_is_not_counted_against_the_limit() -> None:
    full = server_rules.Limits(True, 2, 2, 0, 0)
    assert server_rules.decide_spawn("stopped", "ann", "lab", full) == "spawn"


@pytest.mark.parametrize(
    ("state", "server_name", "remove", "decision"),
    [("ready", "", False, "stop"), ("spawning", "", False, "stop"), ("started", "x", True, "stop"),
     ("stopping", "", False, "pending"), ("stopped", "lab", True, "remove"),
     ("defined", "lab", True, "remove")],
)  # fmt: skip
def test_stop_decisions(state: str, server_name: str, remove: bool, decision: str) -> None:
    assert server_rules.decide_stop(state, "ann", server_name, remove) == decision


@pytest.mark.parametrize(
    ("state", "server_name", "remove", "status", "message"),
    [
        ("stopped", "", False, 400, "ann's server is not running"),
        (None, "", False, 400, "ann's server is not running"),
        (None, "lab", False, 404, "ann has no server named 'lab'"),
        ("ready", "", True, 400, "Cannot delete the default server"),
        ("failed", "lab", False, 400, "ann/lab is not running"),
    ],
)
def test_stop_refusals(
    state: str | None, server_name: str, remove: bool, status: int, message: str
) -> None:
    with pytest.raises(spawner.PolicyError, match=message) as caught:
        server_rules.decide_stop(state, "ann", server_name, remove)
    assert caught.value.status == status


def test_the_environment_contract() -> None:
    env = server_rules.contract_env(
        user="ann",
        server_name="lab",
        api_token="secret",
        hub_url="http://127.0.0.1:8081/hub/",
        service_url="http://127.0.0.1:9999/user/ann/lab/",
        public_url="https://hub.example.org/",
        extra={"MEM_LIMIT": "1G"},
    )
    assert env == {
        "MEM_LIMIT": "1G",
        "JUPYTERHUB_API_TOKEN": "secret",
        "JPY_API_TOKEN": "secret",
        "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-ann-lab",
        "JUPYTERHUB_HOST": "",
        "JUPYTERHUB_OAUTH_CALLBACK_URL": "/user/ann/lab/oauth_callback",
        "JUPYTERHUB_OAUTH_SCOPES": env["JUPYTERHUB_OAUTH_ACCESS_SCOPES"],
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES": json.dumps(
            ["access:servers!server=ann/lab", "access:servers!user=ann"]
        ),
        "JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES": "[]",
        "JUPYTERHUB_USER": "ann",
        "JUPYTERHUB_SERVER_NAME": "lab",
        "JUPYTERHUB_API_URL": "http://127.0.0.1:8081/hub/api",
        "JUPYTERHUB_ACTIVITY_URL": "http://127.0.0.1:8081/hub/api/users/ann/activity",
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_SERVICE_PREFIX": "/user/ann/lab/",
        "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:9999/user/ann/lab/",
        "JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED": "0",
        "JUPYTERHUB_PUBLIC_URL": "https://hub.example.org/user/ann/lab/",
        "JUPYTERHUB_PUBLIC_HUB_URL": "https://hub.example.org/hub/",
    }
    assert server_rules.client_id("ann", "") == "jupyterhub-user-ann"
    assert server_rules.server_token_scopes("ann", "") == [
        "access:servers!server=ann/",
        "users:activity!user=ann",
    ]


def test_routes_match_by_longest_prefix() -> None:
    routes = table.RouteTable(table.Route("/", "http://127.0.0.1:8081"))
    ann = table.Route("/user/ann/", "http://127.0.0.1:1001")
    lab = table.Route("/user/ann/lab/", "http://127.0.0.1:1002")
    svc = table.Route("/services/cull/", "http://127.0.0.1:1003")
    routes.replace([ann, lab, svc])
    assert routes.match("/user/ann/") is ann
    assert routes.match("/user/ann") is ann
    assert routes.match("/user/ann/api/status") is ann
    assert routes.match("/user/ann/lab") is lab
    assert routes.match("/user/ann/lab/api/kernels") is lab
    assert routes.match("/user/ann/labx/") is ann
    assert routes.match("/user/annie/") is routes.default
    assert routes.match("/services/cull/x") is svc
    assert routes.match("/hub/api/users") is routes.default
    assert routes.match("/") is routes.default
    assert ann.address == ("127.0.0.1", 1001)


def test_the_chp_plan_adds_missing_and_moved_routes_and_deletes_stale_ones() -> None:
    key = (None, "")
    routes = [
        table.Route("/user/ann/", "http://127.0.0.1:1001", key),  # type: ignore[arg-type]
        table.Route("/user/bo/lab/", "http://127.0.0.1:1002", key),  # type: ignore[arg-type]
        table.Route("/services/cull/", "http://127.0.0.1:1003"),
    ]
    want = chp.desired(routes, "http://127.0.0.1:8081")
    assert want == {
        "/": {"target": "http://127.0.0.1:8081", "hub": True},
        "/user/ann": {"target": "http://127.0.0.1:1001", "user": "ann", "server_name": ""},
        "/user/bo/lab": {"target": "http://127.0.0.1:1002", "user": "bo", "server_name": "lab"},
        "/services/cull": {"target": "http://127.0.0.1:1003", "service": "cull"},
    }
    have = {
        "/": {"target": "http://127.0.0.1:8081", "hub": True},
        "/user/ann": {"target": "http://127.0.0.1:9999"},  # moved
        "/user/old": {"target": "http://127.0.0.1:1000"},  # stale
        "/services/cull": {"target": "http://127.0.0.1:1003", "service": "cull"},
    }
    plan = chp.plan(want, have)
    assert sorted(plan.add) == ["/user/ann", "/user/bo/lab"]
    assert plan.delete == ["/user/old"]
    assert chp.plan(want, want) == chp.Plan(add={}, delete=[])
    # CHP's own route for --default-target has no data: the hub flag is added to it; the
    # last_activity CHP adds to every route changes nothing.
    bare = {path: {**body, "last_activity": "2026-01-01T00:00:00Z"} for path, body in want.items()}
    bare["/"] = {"target": "http://127.0.0.1:8081"}
    assert chp.plan(want, bare) == chp.Plan(add={"/": want["/"]}, delete=[])
