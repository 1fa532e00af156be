"""``POST /hub/api/services/{name}/events``: a service reports what it did into the log, under
its own name only, and nothing named like a secret or longer than a line gets in."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

from tests.integration.api_fixtures import CULLER_TOKEN, SERVICE_TOKEN, Api

pytestmark = pytest.mark.integration


async def events_of(pool: asyncpg.Pool[Any], stream: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT event_type, data, metadata FROM events WHERE stream_id = $1"
        " ORDER BY global_position",
        stream,
    )
    return [
        {
            "type": r["event_type"],
            "data": json.loads(r["data"]),
            "metadata": json.loads(r["metadata"]),
        }
        for r in rows
        if r["event_type"] == "service.reported"
    ]


async def test_a_service_reports_into_its_own_stream_and_the_audit_api_shows_it(
    api: Api, pool: asyncpg.Pool[Any]
) -> None:
    body = {
        "kind": "published",
        "subject": "alice/lab",
        "data": {"commit": "0" * 40, "notebooks": 3, "seconds": 1.25, "incremental": True},
    }
    status, reply = await api.call("POST", "/services/bench/events", SERVICE_TOKEN, json=body)
    assert status == 201, reply
    assert reply["type"] == "service.reported"
    reported = await events_of(pool, "service-bench")
    assert len(reported) == 1
    assert reported[0]["data"] == {"name": "bench", **body}
    assert reported[0]["metadata"]["actor"] == {"kind": "service", "name": "bench"}
    # the audit API shows it, with the id the answer gave, to a holder of read:events
    admin = await api.user_token("admin")
    status, listed = await api.call("GET", "/events?type=service.reported", admin)
    assert status == 200, listed
    assert [(e["id"], e["data"]["kind"]) for e in listed] == [(reply["id"], "published")]


async def test_only_the_service_itself_may_report(api: Api, pool: asyncpg.Pool[Any]) -> None:
    body = {"kind": "published"}
    # another service, naming bench
    status, reply = await api.call("POST", "/services/bench/events", CULLER_TOKEN, json=body)
    assert status == 403, reply
    assert "only the service bench" in reply["message"]
    # a user (even one allowed much)
    token = await api.user_token("ursula")
    status, reply = await api.call("POST", "/services/bench/events", token, json=body)
    assert status == 403, reply
    # nobody
    status, reply = await api.call("POST", "/services/bench/events", None, json=body)
    assert status == 403, reply
    assert await events_of(pool, "service-bench") == []


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({}, "kind"),
        ({"kind": "Published!"}, "kind"),
        ({"kind": "x" * 65}, "kind"),
        ({"kind": "published", "data": {"api_token": "abc"}}, "named like a secret"),
        ({"kind": "published", "data": {"session_cookie": "abc"}}, "named like a secret"),
        ({"kind": "published", "data": {"Bad Key": 1}}, "lowercase name"),
        ({"kind": "published", "data": {"text": "x" * 2001}}, "2000"),
        ({"kind": "published", "data": {"nested": {"a": 1}}}, "data"),
        ({"kind": "published", "data": {f"k{i}": i for i in range(33)}}, "data"),
        ({"kind": "published", "subject": "s" * 301}, "subject"),
        ({"kind": "published", "extra": 1}, "extra"),
    ],
)
async def test_bad_reports_are_refused_naming_the_problem_and_nothing_is_written(
    api: Api, pool: asyncpg.Pool[Any], body: dict[str, Any], named: str
) -> None:
    status, reply = await api.call("POST", "/services/bench/events", SERVICE_TOKEN, json=body)
    assert status == 400, reply
    assert named in reply["message"], reply
    assert await events_of(pool, "service-bench") == []
