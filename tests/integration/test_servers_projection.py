"""The servers and routes read models: a run of renames in one batch (applied as one
statement each) leaves every user's last name, live and rebuilt alike."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import asyncpg
import pytest

from events import store
from events.catalog import servers as server_events
from events.catalog import users as user_events
from projections import catalog, rebuild

pytestmark = pytest.mark.integration


async def test_a_run_of_renames_leaves_each_users_last_name(
    event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    ids = {name: uuid4() for name in ("ann", "ben", "cat")}
    for name, user_id in ids.items():
        await event_store.append(
            user_events.stream_id(user_id), [user_events.UserCreated(user_id=user_id, name=name)]
        )
        base = {"user_id": user_id, "user": name}
        url = f"http://127.0.0.1:1/user/{name}/"
        await event_store.append(
            server_events.stream_id(user_id),
            [
                server_events.ServerSpawnRequested(**base),
                server_events.ServerReady(**base, url=url),
            ],
        )
    # ann renamed twice in one append (a run of two, applied live at once; the second wins),
    # ben once; cat not at all. The rebuild below replays all three as one run.
    ann, ben = ids["ann"], ids["ben"]
    await event_store.append(
        user_events.stream_id(ann),
        [
            user_events.UserRenamed(user_id=ann, old_name="ann", name="ann2"),
            user_events.UserRenamed(user_id=ann, old_name="ann2", name="ann3"),
        ],
    )
    await event_store.append(
        user_events.stream_id(ben),
        [user_events.UserRenamed(user_id=ben, old_name="ben", name="ben2")],
    )
    want = {ids["ann"]: "ann3", ids["ben"]: "ben2", ids["cat"]: "cat"}
    for table in ("servers", "routes"):
        rows = await pool.fetch(f"SELECT user_id, user_name FROM {table}")
        assert dict(rows) == want, table
    for projection in catalog.ALL:
        if projection.name in ("servers", "routes"):
            result = await rebuild.verify(event_store, projection)
            assert result.differences == (), projection.name
            assert result.events > 0
