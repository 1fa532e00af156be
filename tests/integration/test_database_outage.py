"""A database that stops answering: the API says 503 with a clear message (not a 500), and a
collab connection is closed with the code y-websocket retries, whichever part met it first."""

from __future__ import annotations

import asyncio

import pytest
from websockets.exceptions import InvalidStatus

from collab import client
from events import errors as event_errors
from hub import database, errors
from tests import ports
from tests.integration.collab_fixtures import CollabHub
from tests.integration.collab_fixtures import collab_hub as collab_hub

pytestmark = pytest.mark.integration


async def test_the_api_answers_503_when_the_database_is_gone(collab_hub: CollabHub) -> None:
    alice = await collab_hub.token("alice")
    collab_hub.api.store.pool.terminate()
    status, reply = await collab_hub.api.call("GET", "/user", token=alice)
    assert (status, reply) == (503, {"status": 503, "message": errors.DATABASE_UNAVAILABLE})


async def test_a_collab_handshake_meets_the_outage_as_503(collab_hub: CollabHub) -> None:
    alice = await collab_hub.token("alice")
    collab_hub.api.store.pool.terminate()
    # A token in a header is checked by the hub's API middleware before the room is opened.
    with pytest.raises(InvalidStatus) as refused:
        async with client.connect(collab_hub.url, "down", token=alice):
            await asyncio.sleep(0)
    assert refused.value.response.status_code == 503


async def test_the_api_answers_503_when_the_database_refuses_connections(
    collab_hub: CollabHub,
) -> None:
    """A database whose server is gone refuses new connections (an OSError from the socket,
    not a driver error): the pool turns that into the same 503, not a 500."""
    alice = await collab_hub.token("alice")
    nowhere = f"postgresql://chronohub@127.0.0.1:{ports.free_port()}/chronohub"
    gone = await database.create_pool(nowhere, min_size=0, max_size=1)
    store = collab_hub.api.store
    live, store.pool = store.pool, gone
    try:
        status, reply = await collab_hub.api.call("GET", "/user", token=alice)
    finally:
        store.pool = live
        await gone.close()
    assert (status, reply) == (503, {"status": 503, "message": errors.DATABASE_UNAVAILABLE})


async def test_the_pools_waits_are_bounded_and_say_so(db_url: str) -> None:
    """A pool out of connections and a statement that runs too long end as
    DatabaseUnavailable (503 at the edge) within their limits, not as a bare TimeoutError."""
    pool = await database.create_pool(
        db_url, min_size=1, max_size=1, acquire_timeout=0.3, statement_timeout=0.5
    )
    try:
        async with pool.acquire() as held:
            with pytest.raises(event_errors.DatabaseUnavailable, match="db_acquire_timeout"):
                async with pool.acquire():
                    pass
            with pytest.raises(event_errors.DatabaseUnavailable, match="db_acquire_timeout"):
                await pool.acquire()
            assert await held.fetchval("SELECT 1") == 1
        with pytest.raises(event_errors.DatabaseUnavailable, match="db_statement_timeout"):
            async with pool.acquire() as conn:
                await conn.fetchval("SELECT pg_sleep(5)")
        # the statement was cancelled: the pool serves again at once
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await pool.close()
