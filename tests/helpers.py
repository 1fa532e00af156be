"""Helpers shared by the tests: waiting with a deadline, and event types used only by tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar
from uuid import UUID

from pydantic import Field

from events import models


async def wait_for(
    predicate: Callable[[], Any | Awaitable[Any]], *, timeout_s: float = 10.0, every_s: float = 0.01
) -> None:
    """Poll ``predicate`` (plain or async) until it is true; fail after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(every_s)


class Noted(models.Event):
    """A test event: some text noted on a stream."""

    type: ClassVar[str] = "test.noted"

    text: str = Field(max_length=100_000)


class Counted(models.Event):
    """A test event at schema version 3; versions 1 and 2 named and shaped the field differently."""

    type: ClassVar[str] = "test.counted"
    schema_version: ClassVar[int] = 3
    upcasters: ClassVar[dict[int, Any]] = {
        1: lambda d: {"count": d["n"]},
        2: lambda d: {"count": d["count"], "unit": "item"},
    }

    count: int
    unit: str


class Touched(models.Event):
    """A test event carrying an id, for projections written in tests."""

    type: ClassVar[str] = "test.touched"

    thing: UUID
