"""Contract test: schemathesis drives chronohub with JupyterHub's published OpenAPI spec.

Only the operations chronohub implements (``hub.openapi.OPERATIONS``) are exercised. The real
app (the ``api`` fixture: aiohttp's test server on 127.0.0.1, torn down by the fixture) serves
while schemathesis's CLI runs in a subprocess, so the session event loop keeps answering. The
run fails on any 5xx and on any response whose status code, content type, headers or body the
spec does not allow. Generation is seeded and single-worker, so a CI run is reproducible.

The spec is wrong in places where JupyterHub's code is right, and chronohub follows the code
(jupyterhub-compat.md §2.5). Each such place is corrected in ``amend`` below, in the document
handed to schemathesis, naming the discrepancy; the spec file itself stays verbatim.
"""

from __future__ import annotations

import asyncio
import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import test_utils

from events import store
from hub import app, bootstrap, context
from hub import settings as hub_settings
from hub.api import openapi
from hub.api import proxy as proxy_api
from hub.proxy import builtin as proxy
from hub.proxy import routes, table
from tests.integration.api_fixtures import CONFIG, SERVICE_TOKEN, Api

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve()
# JupyterHub's spec, copied into the repository with its BSD-3-Clause notice, so that the test
# never depends on a checkout of shared/ beside this one.
SPEC = HERE.parents[1] / "contract" / "jupyterhub-rest-api.yml"
# The reference it was copied from: shared/ beside the repository (/work/shared for /work/main).
REFERENCE_SPEC = HERE.parents[3] / "shared" / "reference" / "jupyterhub-rest-api.yml"

HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})

# chronohub operations that JupyterHub's spec does not document (compat §2.5: "Spec omits ...
# POST /groups"), so there is nothing to check them against.
NOT_IN_SPEC = {
    ("post", "/groups"),
    # chronohub's own audit API (not JupyterHub's): checked by tests/integration/test_audit_api.py
    ("get", "/events"),
    ("get", "/events/stream"),
    # chronohub's own password and signup endpoints (issue 4): tests/integration/test_login.py
    ("put", "/users/{name}/password"),
    ("get", "/signups"),
    ("post", "/signups/{name}"),
    ("delete", "/signups/{name}"),
    # JupyterHub serves these, its spec omits them (compat §2.5)
    ("get", "/users/{name}/server"),
    ("get", "/users/{name}/server/progress"),
    ("get", "/users/{name}/servers/{server_name}/progress"),
    # chronohub's own shared execution sessions (issue 7): tests/integration/
    # test_collab_sessions_api.py
    ("post", "/collab/sessions"),
    ("get", "/collab/sessions"),
    ("get", "/collab/sessions/{session_id}"),
    ("delete", "/collab/sessions/{session_id}"),
    ("post", "/collab/sessions/{session_id}/execute"),
    ("post", "/collab/sessions/{session_id}/interrupt"),
    ("post", "/collab/sessions/{session_id}/restart"),
    # chronohub's own sessions on a project's notebook (issue 17): tests/integration/
    # test_project_sessions.py
    ("post", "/collab/sessions/{session_id}/commit"),
    ("post", "/projects/{owner}/{name}/sessions"),
    ("get", "/projects/{owner}/{name}/sessions"),
    # chronohub's own project browsing (issue 14): tests/integration/test_projects_browse.py
    ("get", "/projects/{owner}/{name}/refs"),
    ("get", "/projects/{owner}/{name}/commits"),
    ("get", "/projects/{owner}/{name}/tree/{ref}/{path}"),
    ("get", "/projects/{owner}/{name}/raw/{ref}/{path}"),
    ("get", "/projects/{owner}/{name}/compare/{base}...{head}"),
    # chronohub's own git projects (issue 14): tests/integration/test_projects_api.py and
    # test_projects_admin.py, whose replies are checked against hub/api/models.py
    *(
        (method, "/projects" + tail)
        for method, tail in (
            ("get", ""),
            ("post", ""),
            ("get", "/{owner}/{name}"),
            ("patch", "/{owner}/{name}"),
            ("delete", "/{owner}/{name}"),
            ("get", "/{owner}/{name}/members"),
            ("put", "/{owner}/{name}/members/users/{member}"),
            ("delete", "/{owner}/{name}/members/users/{member}"),
            ("put", "/{owner}/{name}/members/groups/{member}"),
            ("delete", "/{owner}/{name}/members/groups/{member}"),
            ("get", "/{owner}/{name}/access"),
            ("post", "/{owner}/{name}/sync"),
        )
    ),
}
# Server operations need a hub that spawns: tests/integration/test_servers.py checks them with
# a real spawner; schemathesis (whose hub here spawns nothing) leaves them out.
SPAWNING = {
    ("post", "/users/{name}/server"),
    ("delete", "/users/{name}/server"),
    ("get", "/users/{name}/servers/{server_name}"),
    ("post", "/users/{name}/servers/{server_name}"),
    ("put", "/users/{name}/servers/{server_name}"),
    ("patch", "/users/{name}/servers/{server_name}"),
    ("delete", "/users/{name}/servers/{server_name}"),
}
# The proxy API needs a proxy in front of the hub: test_schemathesis_proxy_api checks it with
# the built-in proxy, as an admin (the ``proxy`` scope).
PROXY = {("get", "/proxy"), ("post", "/proxy"), ("patch", "/proxy")}
# The sharing API (JupyterHub 5) needs someone who may share: test_schemathesis_shares_api
# checks it as an admin (the ``shares`` scope), on a hub where a server is already shared.
SHARES = {
    ("get", "/shares/{owner}"),
    ("get", "/shares/{owner}/{server_name}"),
    ("post", "/shares/{owner}/{server_name}"),
    ("patch", "/shares/{owner}/{server_name}"),
    ("delete", "/shares/{owner}/{server_name}"),
    ("get", "/share-codes/{owner}"),
    ("get", "/share-codes/{owner}/{server_name}"),
    ("post", "/share-codes/{owner}/{server_name}"),
    ("delete", "/share-codes/{owner}/{server_name}"),
    ("get", "/users/{name}/shared"),
    ("get", "/users/{name}/shared/{owner}/{server_name}"),
    ("delete", "/users/{name}/shared/{owner}/{server_name}"),
    ("get", "/groups/{name}/shared"),
    ("get", "/groups/{name}/shared/{owner}/{server_name}"),
    ("delete", "/groups/{name}/shared/{owner}/{server_name}"),
}

SEED = 20240611
MAX_EXAMPLES = 30  # per operation and phase
RUN_TIMEOUT = 90.0  # seconds, for the whole schemathesis run (about 15 s on a 2-core machine)
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
]

# JupyterHub's error body (compat §1.3), which the spec never describes.
ERROR = {
    "type": "object",
    "properties": {"status": {"type": "integer"}, "message": {"type": "string"}},
    "required": ["status", "message"],
}

# The error statuses JupyterHub's handlers (jupyterhub/apihandlers/*.py, 6.1.1) answer with.
# The spec lists almost only success codes, so every 404 for a made-up name would otherwise
# fail status_code_conformance. 403: no or invalid credentials, or a scope missing
# (@needs_scope); 404: no such resource, or a filtered scope that does not cover it; 400: bad
# JSON or fields, bad offset/limit/state/sort, "Cannot delete yourself!", "No such user" in a
# member list; 409: already exists.
ERROR_STATUSES: dict[tuple[str, str], set[int]] = {
    ("get", "/"): set(),  # unauthenticated, cannot fail
    ("get", "/info"): {403},
    ("get", "/user"): {403},
    ("get", "/users"): {400, 403},
    ("post", "/users"): {400, 403, 409},
    ("get", "/users/{name}"): {403, 404},
    ("post", "/users/{name}"): {400, 403, 404, 409},
    ("patch", "/users/{name}"): {400, 403, 404},
    ("delete", "/users/{name}"): {400, 403, 404},
    ("post", "/users/{name}/activity"): {400, 403, 404},
    ("get", "/users/{name}/tokens"): {403, 404},
    # not @needs_scope: an unknown user is 403 "User x not found or no permissions ..."
    ("post", "/users/{name}/tokens"): {400, 403},
    ("get", "/users/{name}/tokens/{token_id}"): {403, 404},
    ("delete", "/users/{name}/tokens/{token_id}"): {403, 404},
    ("get", "/groups"): {400, 403},
    ("get", "/groups/{name}"): {403, 404},
    ("post", "/groups/{name}"): {400, 403, 404, 409},
    ("delete", "/groups/{name}"): {403, 404},
    ("post", "/groups/{name}/users"): {400, 403, 404},
    ("delete", "/groups/{name}/users"): {400, 403, 404},
    ("put", "/groups/{name}/properties"): {400, 403, 404},
    # An unknown client or redirect_uri, a missing parameter: 400 (an HTML page for browsers,
    # which the spec's body-less 400 allows); never a redirect to an unregistered URI.
    ("get", "/oauth2/authorize"): set(),
    # oauthlib's errors: 400 (invalid_request, invalid_grant, unsupported_grant_type), 401
    # (invalid_client); their body also carries JupyterHub's status and message.
    ("post", "/oauth2/token"): {400, 401},
    # 400: bad offset/limit, a body that is not a JSON object; chronohub also refuses unknown
    # keys and, with its built-in proxy (nothing to point the hub at), any PATCH.
    ("get", "/proxy"): {400, 403},
    ("post", "/proxy"): {403},
    ("patch", "/proxy"): {400, 403},
    # Services (apihandlers/services.py): 403 without list:services or a read scope; 404 for
    # a service that does not exist or that a filtered scope does not cover.
    ("get", "/services"): {403},
    ("get", "/services/{name}"): {403, 404},
    ("post", "/services/{name}/events"): {400, 403},
    # Sharing (apihandlers/shares.py): 400 bad body, scope or offset/limit, unknown recipient;
    # 403 a scope missing (shares, read:users:name, a scope not held); 404 no such owner,
    # server, share or code, or a filtered scope that does not cover it.
    ("get", "/shares/{owner}"): {400, 403, 404},
    ("get", "/shares/{owner}/{server_name}"): {400, 403, 404},
    ("post", "/shares/{owner}/{server_name}"): {400, 403, 404},
    ("patch", "/shares/{owner}/{server_name}"): {400, 403, 404},
    ("delete", "/shares/{owner}/{server_name}"): {403, 404},
    ("get", "/share-codes/{owner}"): {400, 403, 404},
    ("get", "/share-codes/{owner}/{server_name}"): {400, 403, 404},
    ("post", "/share-codes/{owner}/{server_name}"): {400, 403, 404},
    ("delete", "/share-codes/{owner}/{server_name}"): {400, 403, 404},
    ("get", "/users/{name}/shared"): {400, 403, 404},
    ("get", "/users/{name}/shared/{owner}/{server_name}"): {403, 404},
    ("delete", "/users/{name}/shared/{owner}/{server_name}"): {403, 404},
    ("get", "/groups/{name}/shared"): {400, 403, 404},
    ("get", "/groups/{name}/shared/{owner}/{server_name}"): {403, 404},
    ("delete", "/groups/{name}/shared/{owner}/{server_name}"): {403, 404},
}

# Fields the spec types as plain strings/objects that JupyterHub's code answers with null
# (compat §3 models; several of the spec's own descriptions say so).
NULLABLE: dict[str, list[str]] = {
    # user_model: "server": null unless running, "pending": null, "last_activity": null for a
    # user never seen, "auth_state": null ("None otherwise"), "user_info": null|{...}
    "User": ["server", "pending", "last_activity", "auth_state", "user_info"],
    # server_model: "pending": null, and started/last_activity of a stopped server are null
    "Server": ["pending", "started", "last_activity"],
    # token_model: "Null if there is no expiry", "Can be null if token has never been used"
    "Token": ["expires_at", "last_activity"],
    "NewToken": ["expires_at", "last_activity"],
}


class _SpecLoader(yaml.SafeLoader):
    """YAML as OpenAPI means it: timestamps (the activity example) stay strings."""


_SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_spec(path: Path = SPEC) -> dict[str, Any]:
    """The spec as JSON-compatible data (status codes as strings, as in JSON)."""
    spec: dict[str, Any] = json.loads(
        json.dumps(yaml.load(path.read_text(), Loader=_SpecLoader))  # a SafeLoader
    )
    return spec


def implemented() -> set[tuple[str, str]]:
    """(method, path) of every operation chronohub serves under /hub/api."""
    return {(op.method, op.path) for op in openapi.OPERATIONS}


def documented(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method, path)
        for path, item in spec["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def restrict(spec: dict[str, Any], operations: set[tuple[str, str]]) -> dict[str, Any]:
    """``spec`` with only ``operations`` left in its paths."""
    paths: dict[str, Any] = {}
    for path, item in spec["paths"].items():
        kept = {
            key: value
            for key, value in item.items()
            if key not in HTTP_METHODS or (key, path) in operations
        }
        if HTTP_METHODS & kept.keys():
            paths[path] = kept
    return {**spec, "paths": paths}


def _error_response() -> dict[str, Any]:
    return {
        "description": "JupyterHub's error (compat §1.3)",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _make_nullable(schema: dict[str, Any]) -> None:
    kind = schema["type"]
    schema["type"] = [*kind, "null"] if isinstance(kind, list) else [kind, "null"]
    if "enum" in schema:
        schema["enum"] = [*schema["enum"], None]


def amend(spec: dict[str, Any]) -> dict[str, Any]:
    """Correct the spec where JupyterHub's code (which chronohub follows) departs from it."""
    spec = copy.deepcopy(spec)
    schemas = spec["components"]["schemas"]
    schemas["Error"] = ERROR
    for name, fields in NULLABLE.items():
        for field in fields:
            _make_nullable(schemas[name]["properties"][field])
    # DELETE /groups/{name}/users: the spec says 200 with no body; the handler writes the group
    # model (groups.py, GroupUsersAPIHandler.delete), as POST does. Check it as POST's.
    spec["paths"]["/groups/{name}/users"]["delete"]["responses"]["200"] = copy.deepcopy(
        spec["paths"]["/groups/{name}/users"]["post"]["responses"]["200"]
    )
    # GET /services: the spec says a list; JupyterHub's handler (ServiceListAPIHandler.get)
    # writes a dict of service models by name, which is what its clients read.
    spec["paths"]["/services"]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"
    ] = {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Service"}}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            responses = operation["responses"]
            # Replaces the spec's body-less entries too (400/403 on tokens, 404 on activity).
            for status in ERROR_STATUSES[method, path]:
                responses[str(status)] = _error_response()
            # Every response carries X-JupyterHub-Version (compat §1.1; the singleuser server
            # checks it); the spec never says so.
            for response in responses.values():
                response.setdefault("headers", {})["X-JupyterHub-Version"] = {
                    "required": True,
                    "schema": {"type": "string", "minLength": 1},
                }
    return spec


def test_spec_copy_matches_the_reference() -> None:
    if not REFERENCE_SPEC.is_file():
        pytest.skip(f"no reference spec at {REFERENCE_SPEC} to compare the copy with")
    assert load_spec() == load_spec(REFERENCE_SPEC), (
        f"{SPEC} is stale: copy {REFERENCE_SPEC} over it again, keeping the license header"
    )


def test_every_implemented_operation_is_known() -> None:
    spec = load_spec()
    assert implemented() - documented(spec) == NOT_IN_SPEC
    # a new operation needs its JupyterHub error statuses listed before it is checked
    assert implemented() - NOT_IN_SPEC - SPAWNING == ERROR_STATUSES.keys()


async def test_schemathesis_against_jupyterhub_spec(api: Api, tmp_path: Path) -> None:
    operations = implemented() - NOT_IN_SPEC - SPAWNING - PROXY - SHARES
    await _run_schemathesis(api, operations, SERVICE_TOKEN, tmp_path)


async def test_schemathesis_shares_api(event_store: store.EventStore, tmp_path: Path) -> None:
    # The fuzzing phase sends these operations query strings (offset, limit, id, code repeated)
    # longer than aiohttp's 8190-byte request line; aiohttp's parser refuses those itself
    # (400, text/plain, before any handler or middleware), which is the transport's answer,
    # not the API's. This run's server reads longer lines, so the cases reach the handlers.
    config = hub_settings.Settings(**CONFIG)
    await bootstrap.reconcile(event_store, config)
    hub = context.Hub(settings=config, store=event_store, database="test")
    server = test_utils.TestServer(app.make_app(hub))
    await server.start_server(max_line_size=1 << 20, max_field_size=1 << 16)
    async with test_utils.TestClient(server) as client:
        await _shares_run(Api(client, event_store), tmp_path)


async def _shares_run(api: Api, tmp_path: Path) -> None:
    admin_token = await api.user_token("admin")
    for name in ("alice", "bob"):
        await api.user_token(name)
    assert (await api.call("POST", "/groups/team", json={"users": ["bob"]}))[0] == 201
    for grant in ({"user": "bob"}, {"group": "team"}):
        status, reply = await api.call("POST", "/shares/alice/", token=admin_token, json=grant)
        assert status == 200, reply
    status, reply = await api.call("POST", "/share-codes/alice/", token=admin_token, json={})
    assert status == 200, reply
    await _run_schemathesis(api, SHARES, admin_token, tmp_path / "any")
    # Made-up names mostly meet 404s: again, on alice's default server (shared with bob and
    # the team), so the handlers' own checks and replies are exercised too.
    pinned = '[parameters]\n"owner" = "alice"\n"server_name" = ""\n'
    await _run_schemathesis(api, SHARES, admin_token, tmp_path / "pinned", pinned)


async def test_schemathesis_proxy_api(api: Api, tmp_path: Path) -> None:
    assert api.client.app is not None
    hub_target = str(api.client.make_url("")).rstrip("/")
    async with proxy.Proxy(hub_target) as builtin:
        await builtin.start("127.0.0.1", 0)

        async def to_proxy(table: list[table.Route]) -> None:
            builtin.set_routes(table)

        follower = routes.RouteFollower(api.store.pool, [to_proxy], 3600)
        state = api.client.app[proxy_api.PROXY]
        state.builtin, state.refresh = builtin, follower.refresh
        admin_token = await api.user_token("admin")
        await _run_schemathesis(api, PROXY, admin_token, tmp_path)


async def _run_schemathesis(
    api: Api, operations: set[tuple[str, str]], token: str, tmp_path: Path, config: str = ""
) -> None:
    """Run schemathesis's CLI on ``operations`` of the (amended) spec, as ``token``, with
    ``config`` as its configuration file (TOML)."""
    checked = implemented() - NOT_IN_SPEC - SPAWNING  # what ``amend`` knows the errors of
    schema = restrict(amend(restrict(load_spec(), checked)), operations)
    assert documented(schema) == operations
    tmp_path.mkdir(parents=True, exist_ok=True)
    schema_path = tmp_path / "jupyterhub-rest-api.json"
    schema_path.write_text(json.dumps(schema))
    # a config file of our own (empty by default), so no schemathesis.toml around the run
    # changes it
    config_path = tmp_path / "schemathesis.toml"
    config_path.write_text(config)
    base_url = str(api.client.server.make_url("/hub/api"))
    assert base_url.startswith("http://127.0.0.1:"), base_url
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "--no-color"),
        *("--config-file", str(config_path)),
        *("run", str(schema_path), "--url", base_url),
        *("--header", f"Authorization: token {token}"),
        *("--checks", ",".join(CHECKS)),
        *("--phases", "examples,coverage,fuzzing,stateful"),
        *("--max-examples", str(MAX_EXAMPLES)),
        *("--seed", str(SEED)),
        *("--workers", "1"),  # one request at a time: reproducible database states
        *("--generation-database", "none"),  # no .hypothesis directory; same cases every run
        *("--request-timeout", "10"),
        *("--output-truncate", "false"),
        "--continue-on-failure",  # report every failing case, not the first of each operation
    ]
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT)
    except TimeoutError:
        pytest.fail(f"schemathesis did not finish within {RUN_TIMEOUT:.0f} s")
    finally:
        if process.returncode is None:  # timed out (or cancelled): stop it
            process.kill()
            await process.wait()
    report = output.decode(errors="replace")
    failures = report.find("=== FAILURES ===")
    assert process.returncode == 0, report[failures:] if failures >= 0 else report
