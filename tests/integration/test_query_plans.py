"""The hot queries use their indexes (a plan test: a wrong ORDER BY or cast silently loses them).

The fenced read once sorted on a text cast of ``tx_id`` (an unqualified ORDER BY bound to
the output column): every page became a sequential scan and a sort. These tests read the
plan PostgreSQL chooses for the generic (prepared) form of each query.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import asyncpg
import pytest

from events import store
from hub.audit import history as audit
from hub.reads import users as users_read

pytestmark = pytest.mark.integration

LOAD = """
INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, data,
                    metadata, actor)
SELECT 'note-' || (i % 500), i / 500 + 1, gen_random_uuid(), 'test.noted', 1,
       jsonb_build_object('text', i::text), '{}', 'system:chronohub'
  FROM generate_series(0, 19999) i
"""


async def generic_plan(conn: Any, query: str, *args: Any) -> str:
    """The plan of ``query`` as a prepared statement with a generic plan, as text."""
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    statement = await conn.prepare(f"EXPLAIN (FORMAT JSON) {query}")
    plan = await statement.fetchval(*args)
    await conn.execute("RESET plan_cache_mode")
    return json.dumps(plan)


async def test_fenced_read_walks_the_fence_index(pool: asyncpg.Pool[Any]) -> None:
    await pool.execute(LOAD)
    await pool.execute("ANALYZE events")
    async with pool.acquire() as conn:
        plan = await generic_plan(
            conn,
            store.queries["read_all"],
            "0",
            0,
            1000,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            True,
        )
    assert "events_fence" in plan
    assert '"Node Type": "Sort"' not in plan
    assert "Seq Scan" not in plan


async def test_append_finds_the_stream_version_by_index(pool: asyncpg.Pool[Any]) -> None:
    await pool.execute(LOAD)
    await pool.execute("ANALYZE events")
    async with pool.acquire() as conn:
        plan = await generic_plan(conn, store.queries["stream_version"], "note-7")
    assert "events_stream_version_key" in plan
    assert "Seq Scan" not in plan


async def test_history_about_one_user_uses_the_data_index(pool: asyncpg.Pool[Any]) -> None:
    """The audit query for one subject, planned as audit.history runs it (custom plans)."""
    await pool.execute(
        "INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version,"
        " data, metadata, actor)"
        " SELECT 'user-' || (i % 2000), i / 2000 + 1, gen_random_uuid(), 'user.admin_changed', 1,"
        "        jsonb_build_object('user_id', md5((i % 2000)::text)::uuid, 'admin', true), '{}',"
        "        'system:chronohub'"
        "   FROM generate_series(0, 199999) i"
    )
    await pool.execute("ANALYZE events")
    # One user's 100 events spread over 200,000, as in a real log: found by the index, not by
    # walking the log in position order.
    subject = {"user_id": str(uuid.UUID(hashlib.md5(b"7").hexdigest()))}
    for query in (audit.Query(limit=100), audit.Query(limit=100, descending=True)):
        name = audit.history_query(query, [subject])
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(audit.queries["custom_plans"])
            rows = await conn.fetch(
                "EXPLAIN (FORMAT JSON) " + audit.queries[name],
                *audit.history_args(query, [subject]),
            )
        plan = json.dumps(rows[0][0])
        assert "events_data" in plan, name


async def test_a_users_history_reads_only_its_page_in_position_order(
    pool: asyncpg.Pool[Any],
) -> None:
    """A user's history (``?user=``, all the subjects ``audit.subjects`` makes of one user):
    its events of ``{"user_id": id}`` are read through events_user_position in position order
    and cut to the page (a user's 1,000 events in a log of 10,000,000 are 1,000 pages of their
    own: issue 20 part 3), not all found through the index on data and sorted."""
    await pool.execute(
        "INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version,"
        " data, metadata, actor)"
        " SELECT 'user-' || (i % 1000), i / 1000 + 1, gen_random_uuid(), 'user.admin_changed', 1,"
        "        jsonb_build_object('user_id', md5((i % 1000)::text)::uuid, 'admin', true), '{}',"
        "        'system:chronohub'"
        "   FROM generate_series(0, 199999) i"
    )
    await pool.execute("ANALYZE events")
    user_id = str(uuid.UUID(hashlib.md5(b"7").hexdigest()))
    subjects: list[dict[str, Any]] = [
        {"user_id": user_id},
        {"user_ids": [user_id]},
        {"principal": user_id},
        {"member_id": user_id},
    ]
    for query in (audit.Query(limit=100), audit.Query(limit=100, descending=True)):
        name = audit.history_query(query, subjects)
        args = audit.history_args(query, subjects)
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(audit.queries["custom_plans"])
            rows = await conn.fetch(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + audit.queries[name], *args
            )
            page = json.loads(await conn.fetchval(audit.queries[name], *args))
        plan = rows[0][0] if isinstance(rows[0][0], list) else json.loads(rows[0][0])
        scans = {node.get("Index Name"): node for node in nodes(plan)}
        assert "events_user_position" in scans, (name, list(scans))
        # 100 rows of the user's 1,000 read from the index, not all of them
        assert scans["events_user_position"]["Actual Rows"] <= 100, name
        assert "events_data" in scans, name  # the other subjects: through the index on data
        # Only the page's events are fetched from the log by position: no walk along the
        # primary key to the page's last event (a merge join read 998,123 rows of a
        # 10,000,000-event log for a user's first page).
        fetched = [
            node["Actual Rows"] * node["Actual Loops"]
            for node in nodes(plan)
            if node.get("Index Name") == "events_pkey"
        ]
        assert fetched, name
        assert sum(fetched) <= 100, (name, fetched)
        # ...whatever the planner's estimates at this size: what is joined to the log is the
        # page (at most 100 positions), never all the subjects' events found.
        joined = [
            child["Plan Rows"]
            for node in nodes(plan)
            if any(c.get("Index Name") == "events_pkey" for c in node.get("Plans", []))
            for child in node["Plans"]
            if child.get("Index Name") != "events_pkey"
        ]
        assert joined, name
        assert max(joined) <= 100, (name, joined)
        positions = [event["position"] for event in page]
        assert len(positions) == 100
        assert positions == sorted(positions, reverse=query.descending)


async def test_the_users_page_reads_the_creation_index_down_to_the_page(
    pool: asyncpg.Pool[Any],
) -> None:
    # The users list's JSON (hub/reads/users.sql): a page of 50 of 5,000 users is read from
    # users_created, not a scan and a sort of every user at each request.
    await pool.execute(
        "INSERT INTO users (user_id, name, admin, created, updated, last_position)"
        " SELECT gen_random_uuid(), 'u' || i, false, now() + i * interval '1 ms', now(), i"
        "   FROM generate_series(1, 5000) i"
    )
    await pool.execute("ANALYZE users")
    async with pool.acquire() as conn:
        plan = await generic_plan(
            conn, users_read.queries["users_page_json"], 0, 50, ["auth_state"], False
        )
    # (the total still counts every user: JupyterHub's pagination reports it)
    parsed = json.loads(json.loads(plan))  # generic_plan's text is the JSON plan, quoted
    scans = [(node["Node Type"], node.get("Index Name")) for node in nodes(parsed)]
    assert ("Index Scan", "users_created") in scans, scans


def nodes(plan: Any) -> list[dict[str, Any]]:
    """Every node of an EXPLAIN (FORMAT JSON) plan."""
    found: list[dict[str, Any]] = []
    stack = [item["Plan"] for item in plan]
    while stack:
        node = stack.pop()
        found.append(node)
        stack.extend(node.get("Plans", []))
    return found
