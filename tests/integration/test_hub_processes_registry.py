"""The registry of live hub processes on real PostgreSQL (hub/servers/hub_processes.py): the
last process to leave is told so, exactly one of several leaving at once; a server in a passing
state is taken up by exactly one process, and only once its claimant is no longer live."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from hub.servers import hub_processes

pytestmark = pytest.mark.integration


async def test_only_the_last_process_to_leave_is_told_it_was_the_last(
    pool: asyncpg.Pool[Any],
) -> None:
    first, second = hub_processes.Registry(pool, 30), hub_processes.Registry(pool, 30)
    await first.join()
    await second.join()
    assert await first.leave() is False
    assert await second.leave() is True
    # several leaving at once: exactly one is the last
    many = [hub_processes.Registry(pool, 30) for _ in range(4)]
    for registry in many:
        await registry.join()
    told = await asyncio.gather(*(registry.leave() for registry in many))
    assert sorted(told) == [False, False, False, True]


async def test_a_passing_server_is_taken_up_once_and_only_from_a_process_not_live(
    pool: asyncpg.Pool[Any],
) -> None:
    user_id = uuid.uuid4()
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO servers (user_id, server_name, user_name, display_name, state,"
            " options, last_position) VALUES ($1, '', 'alice', '', 'spawning', '{}', 0)",
            user_id,
        )
    spawner, one, two = (hub_processes.Registry(pool, 0.6) for _ in range(3))
    for registry in (spawner, one, two):
        await registry.join()
    async with pool.acquire() as conn, conn.transaction():
        await spawner.claim(conn, user_id, "")
    async with pool.acquire() as conn:
        assert await one.take_orphaned(conn) == set()  # its spawner is live
    await spawner.leave()  # (or its lease expires)

    async def take(registry: hub_processes.Registry) -> set[tuple[uuid.UUID, str]]:
        async with pool.acquire() as conn:
            return await registry.take_orphaned(conn)

    taken = await asyncio.gather(take(one), take(two))
    assert sorted(len(t) for t in taken) == [0, 1]
    assert set().union(*taken) == {(user_id, "")}
    for registry in (one, two):
        await registry.leave()
