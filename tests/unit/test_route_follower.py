"""The route follower outlives a database that stops answering, and says so in the log."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from events import notify
from hub.proxy import routes, table
from tests.helpers import wait_for


class FlakyPool:
    """A pool whose connections answer the routes query with ``rows``, or fail with ``error``."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.error: Exception | None = None
        self.reads = 0

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[FlakyPool]:
        self.reads += 1
        if self.error is not None:
            raise self.error
        yield self

    async def fetch(self, query: str) -> list[dict[str, Any]]:
        return list(self.rows)


def row(routespec: str, target: str) -> dict[str, Any]:
    return {"routespec": routespec, "target": target, "user_id": None, "server_name": None}


async def test_a_database_error_is_logged_and_the_follower_resumes_syncing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = FlakyPool([row("/user/a/", "http://127.0.0.1:1")])
    seen: list[list[table.Route]] = []

    async def sink(routes_: list[table.Route]) -> None:
        seen.append(routes_)

    follower = routes.RouteFollower(pool, [sink], interval=0.05)
    caplog.set_level(logging.WARNING, logger=routes.__name__)
    await follower.start()
    try:
        assert [r.prefix for r in seen[-1]] == ["/user/a/"]
        pool.error = asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")
        await wait_for(lambda: follower.failures >= 2)
        assert any(
            "could not read the routes" in r.getMessage()
            and "ConnectionDoesNotExist" in r.getMessage()
            for r in caplog.records
        )
        pool.error = asyncpg.exceptions.AdminShutdownError("terminating connection")
        reads = pool.reads
        await wait_for(lambda: pool.reads > reads + 1)  # still trying, past a server error
        pool.error = None
        pool.rows = [row("/user/b/", "http://127.0.0.1:2")]
        await wait_for(lambda: seen and [r.prefix for r in seen[-1]] == ["/user/b/"])
        assert follower.failures == 0
    finally:
        await follower.stop()
    assert not any(r.levelno >= logging.ERROR for r in caplog.records)  # never died


async def test_a_wake_up_of_the_log_reads_the_table_at_once_and_hands_on_only_a_change() -> None:
    """Another hub process's spawn reaches this one's proxy as soon as the log wakes it (not
    at the next periodic check); a wake-up that changed no route bothers no proxy."""
    pool = FlakyPool([row("/user/a/", "http://127.0.0.1:1")])
    seen: list[list[table.Route]] = []

    async def sink(routes_: list[table.Route]) -> None:
        seen.append(routes_)

    wakeup = notify.Wakeup()
    follower = routes.RouteFollower(pool, [sink], interval=3600, wakeup=wakeup)
    await follower.start()
    try:
        assert len(seen) == 1
        pool.rows = [row("/user/a/", "http://127.0.0.1:1"), row("/user/b/", "http://127.0.0.1:2")]
        wakeup.fire()
        await wait_for(lambda: len(seen) == 2, timeout_s=2)
        assert [r.prefix for r in seen[-1]] == ["/user/a/", "/user/b/"]
        reads = pool.reads
        wakeup.fire()  # nothing changed
        await wait_for(lambda: pool.reads > reads, timeout_s=2)
        assert len(seen) == 2
    finally:
        await follower.stop()
