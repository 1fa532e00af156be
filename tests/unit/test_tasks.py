"""``events.tasks.TaskOwner``: a task that dies is logged with its traceback; close cancels."""

from __future__ import annotations

import asyncio
import logging

import pytest

from events import tasks
from tests.helpers import wait_for


async def test_a_task_that_dies_is_logged_with_its_traceback_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    deaths: list[BaseException] = []
    owner = tasks.TaskOwner("test", on_death=lambda _task, exc: deaths.append(exc))

    async def fail() -> None:
        raise ValueError("boom")

    owner.start(fail(), "failing")
    await wait_for(lambda: deaths)
    assert isinstance(deaths[0], ValueError)
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage() == "test task failing died"
    assert record.exc_info is not None
    assert record.exc_info[1] is deaths[0]
    assert len(owner) == 0
    await owner.close()


async def test_close_cancels_what_runs_and_logs_no_death(caplog: pytest.LogCaptureFixture) -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    async with tasks.TaskOwner("test") as owner:
        task = owner.start(forever(), "forever")
        finished = owner.start(asyncio.sleep(0), "quick")
        await started.wait()
        await finished
        assert owner.tasks == {task}
    assert task.cancelled()
    assert len(owner) == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
