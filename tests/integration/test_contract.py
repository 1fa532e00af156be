"""Contract test: schemathesis drives chronohub with JupyterHub's published OpenAPI spec.

Only the operations chronohub implements (``hub.openapi.OPERATIONS``) are exercised. The real
app (the ``api`` fixture, aiohttp's test server on 127.0.0.1) serves while schemathesis's CLI
runs in a subprocess, so the session event loop keeps answering. The run fails on any 5xx and
on any response whose status code, content type, headers or body the spec does not allow.

The spec is wrong in places where JupyterHub's code is right; chronohub follows the code
(jupyterhub-compat.md §2.5). Each such place is amended below, in the document handed to
schemathesis, with the discrepancy it corrects; the spec file itself stays verbatim.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hub import openapi
from tests.integration.api_fixtures import SERVICE_TOKEN, Api, api  # noqa: F401 - fixture

HERE = Path(__file__).resolve()
# JupyterHub's spec, copied into the repository (with its BSD-3-Clause notice) so that the test
# never depends on a checkout of shared/ beside this one.
SPEC = HERE.parents[1] / "contract" / "jupyterhub-rest-api.yml"
# The reference it was copied from: shared/ beside the repository (/work/shared for /work/main).
REFERENCE_SPEC = HERE.parents[3] / "shared" / "reference" / "jupyterhub-rest-api.yml"

# chronohub operations that JupyterHub's spec does not document (compat §2.5: "Spec omits ...
# POST /groups"), so there is nothing to check them against.
NOT_IN_SPEC = {("post", "/groups")}

SEED = 20240611
MAX_EXAMPLES = 25
RUN_TIMEOUT = 90.0
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)

ERROR = {
    "type": "object",
    "properties": {"status": {"type": "integer"}, "message": {"type": "string"}},
    "required": ["status", "message"],
}


def implemented() -> set[tuple[str, str]]:
    """(method, path) of every operation chronohub serves under /hub/api."""
    return {(method, path) for method, path, *_ in openapi.OPERATIONS}


class _SpecLoader(yaml.SafeLoader):
    """YAML as OpenAPI means it: timestamps such as the activity example stay strings."""


_SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_spec(path: Path = SPEC) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.load(path.read_text(), Loader=_SpecLoader)  # noqa: S506
    return spec


def restrict(spec: dict[str, Any], operations: set[tuple[str, str]]) -> dict[str, Any]:
    """``spec`` with only ``operations`` left in its paths."""
    paths: dict[str, Any] = {}
    for path, item in spec["paths"].items():
        kept = {key: value for key, value in item.items() if (key, path) in operations}
        if kept:
            # path-level keys that are not operations (parameters, summary) stay
            kept |= {k: v for k, v in item.items() if k not in HTTP_METHODS}
            paths[path] = kept
    return {**spec, "paths": paths}


HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def amend(spec: dict[str, Any]) -> dict[str, Any]:
    """Correct the spec where JupyterHub's code (which chronohub follows) departs from it."""
    spec = json.loads(json.dumps(spec))  # a deep copy with string status codes
    spec["components"]["schemas"]["Error"] = ERROR
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            responses = operation["responses"]
            for status in error_statuses(method, path, operation):
                # Replace the spec's body-less entries (e.g. 401/404 on activity) too: every
                # JupyterHub error is {"status", "message"} JSON (compat §1.3).
                responses[str(status)] = {
                    "description": "JupyterHub's error (compat §1.3)",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                }
    return spec


def error_statuses(method: str, path: str, operation: dict[str, Any]) -> set[int]:
    """The error statuses JupyterHub's handlers answer ``method path`` with.

    The spec documents almost none of them (it lists success codes only), so without these
    every 404 for a made-up name would fail status_code_conformance.
    """
    if (method, path) == ("get", "/"):
        return set()  # unauthenticated and cannot fail
    statuses = {403}  # missing or invalid credentials, or scope missing (@needs_scope)
    if "{" in path:
        statuses.add(404)  # no such resource, or a filtered scope that does not cover it
    params = {p.get("name") for p in operation.get("parameters", []) if isinstance(p, dict)}
    refs = {p.get("$ref", "").rsplit("/", 1)[-1] for p in operation.get("parameters", [])}
    if "requestBody" in operation or "state" in params or "paginationOffset" in refs:
        statuses.add(400)  # invalid JSON or fields; bad offset/limit/state
    if method in {"post", "delete", "patch"} and path.startswith("/users/{name}"):
        statuses.add(400)  # e.g. "Failed to create user", "Cannot delete yourself!"
    if method == "post" and path in {"/users", "/users/{name}", "/groups/{name}"}:
        statuses.add(409)  # already exists
    return statuses


def test_spec_copy_matches_the_reference() -> None:
    if not REFERENCE_SPEC.is_file():
        pytest.skip(f"no reference spec at {REFERENCE_SPEC} to compare the copy with")
    assert load_spec() == load_spec(REFERENCE_SPEC), (
        f"{SPEC} is stale: copy {REFERENCE_SPEC} over it again, keeping the license header"
    )


def test_every_implemented_operation_is_in_the_spec() -> None:
    documented = {
        (method, path)
        for path, item in load_spec()["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }
    assert implemented() - documented == NOT_IN_SPEC


async def test_schemathesis_against_jupyterhub_spec(api: Api, tmp_path: Path) -> None:
    schema = amend(restrict(load_spec(), implemented() - NOT_IN_SPEC))
    schema_path = tmp_path / "schema.json"
    schema_path.write_text(json.dumps(schema))
    base_url = str(api.client.server.make_url("/hub/api"))
    assert base_url.startswith("http://127.0.0.1:")
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--no-color",
        "run",
        str(schema_path),
        "--url",
        base_url,
        "--header",
        f"Authorization: token {SERVICE_TOKEN}",
        "--checks",
        CHECKS,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--request-timeout",
        "10",
        "--output-truncate",
        "false",
    ]
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    report = output.decode(errors="replace")
    print(report)
    assert process.returncode == 0, report
