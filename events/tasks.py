"""Owned background tasks: each one named, its unexpected death logged, all cancelled on close.

Every long-lived task of chronohub is started through a ``TaskOwner``, so none can die
unseen or outlive what started it. It lives in ``events``, the lowest layer, only because
``collab`` and ``projections`` may import nothing else of ours (import-linter contracts in
pyproject.toml) and no new top-level package is wanted for one small class; it knows nothing
of events.

A short-lived future that its creator awaits, or cancels in a ``finally`` (such as a pending
``__anext__`` raced against a timeout), needs no owner.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


class TaskOwner:
    """Starts named tasks, logs any that dies of an exception (with its traceback), and cancels
    the ones still running on ``close``.

    ``on_death`` is called with the task and its exception after the death is logged (for an
    owner that must react, say by dropping the clients the task served).
    """

    def __init__(
        self,
        what: str,
        *,
        logger: logging.Logger | None = None,
        on_death: Callable[[asyncio.Task[Any], BaseException], None] | None = None,
    ) -> None:
        self.what = what
        self._log = logger or log
        self._on_death = on_death
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(
        self,
        coro: Coroutine[Any, Any, T],
        name: str,
        *,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[T]:
        """Run ``coro`` as a task named ``name``, owned until it ends or ``close`` cancels it
        (in ``context``: by default a copy of the caller's, as asyncio does)."""
        task = asyncio.get_running_loop().create_task(coro, name=name, context=context)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    @property
    def tasks(self) -> frozenset[asyncio.Task[Any]]:
        """The tasks still running."""
        return frozenset(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        self._log.error("%s task %s died", self.what, task.get_name(), exc_info=exc)
        if self._on_death is not None:
            self._on_death(task, exc)

    async def cancel(self, task: asyncio.Task[Any]) -> None:
        """Cancel one task and wait until it has ended (where tasks stop in a set order)."""
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def close(self) -> None:
        """Cancel every task still running and wait until all have ended."""
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            # A dying task's exception was logged by _done; its cancellation is no error.
            await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> TaskOwner:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
