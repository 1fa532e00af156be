"""Two hub processes on one database: a spawn's progress followed from the one that did not
start it, from the log (issue 20). Each hub has its own event store and notifier, as two
processes have, so the follower is woken only by the other's NOTIFY."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from events import notify, store
from hub.servers import spawn_progress
from projections import base, catalog
from tests.integration.spawn_fixtures import ADMIN_TOKEN, SpawnHub, StartHub

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def own_store(db_url: str, pool: asyncpg.Pool[Any]) -> AsyncIterator[store.EventStore]:
    """An event store with a notifier of its own: another process's view of the log."""
    async with notify.Notifier(db_url) as notifier:
        await asyncio.wait_for(notifier.listening.wait(), 10)
        yield store.EventStore(pool, inline=base.Inline(catalog.ALL), notifier=notifier)


async def stream(hub: SpawnHub, user: str) -> AsyncIterator[dict[str, Any]]:
    """The progress events ``hub`` streams for ``user``'s server, as they come."""
    async with hub.client.get(
        f"/hub/api/users/{user}/server/progress",
        headers={"Authorization": f"token {ADMIN_TOKEN}"},
    ) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"] == "text/event-stream"
        async for line in response.content:
            if line.startswith(b"data: "):
                yield json.loads(line[6:])


async def progress(hub: SpawnHub, user: str) -> list[dict[str, Any]]:
    """The progress events ``hub`` streams for ``user``'s server, to the end of the stream."""
    return [event async for event in stream(hub, user)]


@pytest.fixture
async def two_hubs(
    spawn_hub: StartHub, db_url: str, pool: asyncpg.Pool[Any], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Any]:
    """``start(mode, **settings)`` gives hubs A and B, each on a store of its own."""
    # A follower that missed the other process's NOTIFY would wait this long: the test's own
    # timeout is shorter, so only the wake-up can make it pass.
    monkeypatch.setattr(spawn_progress, "LOG_POLL_S", 120.0)
    async with contextlib.AsyncExitStack() as stack:

        async def start(mode: str, **settings: Any) -> tuple[SpawnHub, SpawnHub]:
            a = await stack.enter_async_context(own_store(db_url, pool))
            b = await stack.enter_async_context(own_store(db_url, pool))
            hub_a = await spawn_hub(mode, on_store=a, slow_spawn_timeout=0, **settings)
            hub_b = await spawn_hub(mode, on_store=b, slow_spawn_timeout=0, **settings)
            return hub_a, hub_b

        yield start


async def test_a_spawn_on_one_hub_is_followed_to_ready_from_the_other(two_hubs: Any) -> None:
    hub_a, hub_b = await two_hubs("slow")
    await hub_a.user("ada")
    status, reply = await hub_a.call("POST", "/users/ada/server")
    assert status == 202, reply
    on_a, on_b = await asyncio.wait_for(
        asyncio.gather(progress(hub_a, "ada"), progress(hub_b, "ada")), 30
    )
    assert on_b == on_a  # the same steps, from the log
    assert [e["progress"] for e in on_b] == [0, 10, 50, 100]
    assert on_b[-1] == {
        "progress": 100,
        "ready": True,
        "message": "Server ready at /user/ada/",
        "html_message": 'Server ready at <a href="/user/ada/">/user/ada/</a>',
        "url": "/user/ada/",
    }
    # Once ready, either hub answers the ready event at once.
    assert await progress(hub_b, "ada") == [on_b[-1]]


async def test_a_failing_spawn_on_one_hub_is_seen_failed_from_the_other(two_hubs: Any) -> None:
    hub_a, hub_b = await two_hubs("hang", start_timeout=1.5)
    await hub_a.user("bo")
    status, reply = await hub_a.call("POST", "/users/bo/server")
    assert status == 202, reply
    on_a, on_b = await asyncio.wait_for(
        asyncio.gather(progress(hub_a, "bo"), progress(hub_b, "bo")), 30
    )
    assert on_b == on_a
    assert on_b[-1]["failed"] is True
    assert on_b[-1]["message"].startswith("Spawn failed: the server did not answer")
    assert "reason" not in on_b[-1]
    assert "kind" not in on_b[-1]
    status, reply = await hub_b.call("GET", "/users/bo/server/progress")
    assert status == 400
    assert reply["message"] == "bo's server is not starting"


async def test_a_spawn_stopped_from_one_hub_ends_the_other_hubs_stream(two_hubs: Any) -> None:
    hub_a, hub_b = await two_hubs("hang", start_timeout=30)
    await hub_a.user("cy")
    status, reply = await hub_a.call("POST", "/users/cy/server")
    assert status == 202, reply
    on_b = stream(hub_b, "cy")
    first = await asyncio.wait_for(anext(on_b), 30)  # B follows the spawn A runs
    assert first == {"progress": 0, "message": "Server requested"}
    status, reply = await hub_a.call("DELETE", "/users/cy/server")
    assert status == 204, reply
    rest = await asyncio.wait_for(collect(on_b), 30)
    assert rest[-1] == {"progress": 100, "failed": True, "message": "Spawn cancelled: stopped"}


async def collect(events: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event async for event in events]
