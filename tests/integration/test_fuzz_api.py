"""Fuzzing the request bodies, paths and queries of chronohub's own endpoints with schemathesis.

test_contract.py drives the operations JupyterHub's spec documents; the ones it does not
(``NOT_IN_SPEC``: chronohub's projects, collab sessions, audit, signups, passwords, service
reports, spawn progress) are driven here with chronohub's own OpenAPI document
(``hub.api.openapi.document()``: the pydantic models the handlers validate with). The check
is the one a fuzzer can make of any endpoint: no 5xx, whatever is sent. Run as an admin,
with the project parameters pinned to a real project, so the handlers' own checks are
reached. Budget: ``MAX_EXAMPLES`` per operation and phase, or ``FUZZ_EXAMPLES``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from events import store
from hub.api import openapi
from tests import fuzzing
from tests.integration.api_fixtures import Api
from tests.integration.collab_fixtures import serving
from tests.integration.test_contract import NOT_IN_SPEC

pytestmark = pytest.mark.integration

# Left out: starting a session starts a real kernel (tests/collab covers those), the event
# stream never ends by itself (test_audit_api.py follows it), and a server and its spawn
# progress need a hub that spawns (test_servers.py, with a real spawner; this hub answers 503).
NEEDS_MORE = {
    ("post", "/collab/sessions"),
    ("post", "/projects/{owner}/{name}/sessions"),
    ("get", "/events/stream"),
    ("get", "/users/{name}/server"),
    ("get", "/users/{name}/server/progress"),
    ("get", "/users/{name}/servers/{server_name}/progress"),
}
FUZZED = NOT_IN_SPEC - NEEDS_MORE
MAX_EXAMPLES = fuzzing.examples(4)
SEED = 20261207
RUN_TIMEOUT = 120.0


def chronohub_document(operations: set[tuple[str, str]]) -> dict[str, object]:
    """chronohub's OpenAPI document with only ``operations`` in its paths."""
    document = openapi.document()
    paths: dict[str, dict[str, object]] = {}
    for path, item in document["paths"].items():
        kept = {method: op for method, op in item.items() if (method, path) in operations}
        if kept:
            paths[path] = kept
    return {**document, "paths": paths}


def test_every_operation_left_to_fuzz_is_documented() -> None:
    documented = {
        (method, path) for path, item in openapi.document()["paths"].items() for method in item
    }
    assert documented >= FUZZED


async def run_schemathesis(api: Api, token: str, tmp_path: Path, config: str) -> str:
    tmp_path.mkdir(parents=True, exist_ok=True)
    schema_path = tmp_path / "chronohub-api.json"
    schema_path.write_text(json.dumps(chronohub_document(FUZZED)))
    config_path = tmp_path / "schemathesis.toml"
    config_path.write_text(config)
    base_url = str(api.client.server.make_url("/hub/api"))
    assert base_url.startswith("http://127.0.0.1:"), base_url
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "--no-color"),
        *("--config-file", str(config_path)),
        *("run", str(schema_path), "--url", base_url),
        *("--header", f"Authorization: token {token}"),
        *("--checks", "not_a_server_error"),
        *("--phases", "examples,coverage,fuzzing"),
        *("--max-examples", str(MAX_EXAMPLES)),
        *("--seed", str(SEED)),
        *("--workers", "1"),
        *("--generation-database", "none"),
        *("--request-timeout", "10"),
        *("--output-truncate", "false"),
        "--continue-on-failure",
    ]
    process = await asyncio.create_subprocess_exec(
        *command, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT)
    except TimeoutError:
        pytest.fail(f"schemathesis did not finish within {RUN_TIMEOUT:.0f} s")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    report = output.decode(errors="replace")
    failures = report.find("=== FAILURES ===")
    assert process.returncode == 0, report[failures:] if failures >= 0 else report
    return report


async def test_chronohub_endpoints_answer_fuzzed_requests_without_a_server_error(
    event_store: store.EventStore, db_url: str, tmp_path: Path
) -> None:
    # rooms and a session manager (the sessions API answers 503 without), and a data
    # directory for the projects' repositories
    async with serving(event_store, db_url, data_dir=tmp_path / "data") as hub:
        admin = await hub.token("admin")
        await hub.token("alice")
        status, reply = await hub.api.call("POST", "/projects", admin, json={"name": "demo"})
        assert status == 201, reply
        # made-up owners and names would mostly meet 404s: pinned to a real project, the
        # handlers' own checks of the other parameters, queries and bodies are reached
        pinned = '[parameters]\n"owner" = "admin"\n"name" = "demo"\n'
        await run_schemathesis(hub.api, admin, tmp_path, pinned)
