"""A full workflow through the API, then the audit guarantees over what it left behind:

* every projection, rebuilt from the log, equals the live tables (`chronohub projections
  verify`, exit 0);
* no secret handed out during the workflow appears anywhere in the log.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import asyncpg

from tests.integration.api_fixtures import CULLER_TOKEN, SERVICE_TOKEN, Api


async def run_workflow(api: Api) -> list[str]:
    """Users, groups, roles, tokens and their revocation; returns every secret handed out."""
    secrets = [SERVICE_TOKEN, CULLER_TOKEN]
    status, _ = await api.call("POST", "/users", json={"usernames": [f"w{i}" for i in range(6)]})
    assert status == 201
    await api.call("PATCH", "/users/w0", json={"name": "w0-renamed", "admin": True})
    await api.call("POST", "/groups", json={"groups": ["course", "lab"], "users": ["w1", "w2"]})
    await api.call("POST", "/groups/lab/users", json={"users": ["w3"]})
    await api.call("DELETE", "/groups/course/users", json={"users": ["w1"]})
    await api.call("PUT", "/groups/lab/properties", json={"quota": 5})
    for name in ("w1", "w2", "w3"):
        secrets.append(await api.user_token(name, note=f"{name}'s laptop", expires_in=600))
    status, narrow = await api.call(
        "POST", "/users/w2/tokens", token=secrets[-2], json={"scopes": ["read:users!user=w2"]}
    )
    assert status == 201
    secrets.append(narrow["token"])
    _, listed = await api.call("GET", "/users/w1/tokens")
    await api.call("DELETE", f"/users/w1/tokens/{listed['api_tokens'][0]['id']}")
    await api.call("POST", "/users/w4/activity", json={"last_activity": "2026-11-24T08:00:00Z"})
    await api.call("DELETE", "/users/w5")
    await api.call("DELETE", "/groups/course")
    return secrets


async def test_full_workflow_then_verify_and_search_the_log_for_secrets(
    api: Api, db_url: str, pool: asyncpg.Pool[Any]
) -> None:
    secrets = await run_workflow(api)

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", "projections", "verify",
        env={**os.environ, "CHRONOHUB_DATABASE_URL": db_url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, out.decode()
    for name in ("users", "groups", "tokens", "services", "roles"):
        assert f"{name}: identical" in out.decode()

    # Every column of every event, as an audit export would carry it.
    log = "\n".join(r[0] for r in await pool.fetch("SELECT row_to_json(e)::text FROM events e"))
    types = {r[0] for r in await pool.fetch("SELECT DISTINCT event_type FROM events")}
    assert {"token.issued", "token.revoked", "group.members_removed", "user.renamed"} <= types
    for secret in secrets:
        assert secret not in log
    for generated in secrets[2:]:  # the hub's own tokens: 32 random hex characters
        assert generated[:8] not in log  # not even a recognisable piece of one
    # The hashes are outside the log, and a token still works: they are where auth looks.
    assert await pool.fetchval("SELECT count(*) FROM token_secrets") >= len(secrets) - 1
    assert (await api.call("GET", "/user", token=secrets[-1]))[0] == 200
