"""``/hub/metrics``: Prometheus' text format, only to holders of ``read:metrics``; requests,
spawns and event appends are counted where they happen."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from prometheus_client import parser

from events import store
from hub import metrics
from projections import base, catalog
from tests.integration.spawn_fixtures import CONFIG, StartHub
from tests.integration.test_projections import create_user

pytestmark = pytest.mark.integration

MONITOR_TOKEN = "monitor-secret-0123456789abcdef"
MONITORED: dict[str, Any] = {
    "services": [*CONFIG["services"], {"name": "monitor", "api_token": MONITOR_TOKEN}],
    "roles": [
        *CONFIG["roles"],
        {"name": "monitor-role", "scopes": ["read:metrics"], "services": ["monitor"]},
    ],
}


def sample(text: str, name: str, **labels: str) -> float:
    """The value of sample ``name`` with exactly ``labels`` in ``text`` (0 when absent)."""
    for family in parser.text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return 0.0


async def test_metrics_are_served_only_with_read_metrics(spawn_hub: StartHub) -> None:
    hub = await spawn_hub("serve", **MONITORED)
    alice = await hub.user("alice")
    for token in (None, alice, CONFIG["services"][0]["api_token"]):
        headers = {"Authorization": f"token {token}"} if token else {}
        response = await hub.client.get("/hub/metrics", headers=headers)
        assert response.status == 403, (token, response.status)
        assert "chronohub_" not in await response.text()

    response = await hub.client.get(
        "/hub/metrics", headers={"Authorization": f"token {MONITOR_TOKEN}"}
    )
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    text = await response.text()
    for name in (
        "chronohub_request_duration_seconds",
        "chronohub_spawns_total",
        "chronohub_git_pushes_total",
        "chronohub_collab_rooms_open",
        "process_cpu_seconds_total",
    ):
        assert f"# TYPE {name} " in text, name


async def test_a_request_and_a_spawn_are_counted(spawn_hub: StartHub) -> None:
    hub = await spawn_hub("serve", **MONITORED)
    monitor = {"Authorization": f"token {MONITOR_TOKEN}"}
    await hub.user("alice")
    before = await (await hub.client.get("/hub/metrics", headers=monitor)).text()

    status, reply = await hub.call("POST", "/users/alice/server")
    assert status == 201, reply
    after = await (await hub.client.get("/hub/metrics", headers=monitor)).text()

    route = {"method": "POST", "route": "/hub/api/users/{name}/server", "status": "201"}
    count = "chronohub_request_duration_seconds_count"
    assert sample(after, count, **route) == sample(before, count, **route) + 1
    spawns = "chronohub_spawns_total"
    assert sample(after, spawns, outcome="ready") == sample(before, spawns, outcome="ready") + 1
    took = "chronohub_spawn_duration_seconds_count"
    assert sample(after, took, outcome="ready") == sample(before, took, outcome="ready") + 1
    # Refused requests count too, under their status.
    refused = {"method": "GET", "route": "/hub/metrics", "status": "403"}
    denied_before = sample(after, count, **refused)
    await hub.client.get("/hub/metrics")
    final = await (await hub.client.get("/hub/metrics", headers=monitor)).text()
    assert sample(final, count, **refused) == denied_before + 1


async def test_committed_appends_are_counted_by_type(pool: asyncpg.Pool[Any]) -> None:
    counted = store.EventStore(
        pool, inline=base.Inline(catalog.ALL), on_append=metrics.count_appended
    )
    name = "chronohub_events_appended_total"
    before = sample(metrics.render().decode(), name, type="user.created")
    await create_user(counted, "ada")
    async with counted.session() as session:
        await create_user(store.EventStore(pool), "ben")  # not this store: not counted
        del session
    assert sample(metrics.render().decode(), name, type="user.created") == before + 1
