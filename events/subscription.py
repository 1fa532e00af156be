"""Catch-up subscriptions: read from a checkpoint to the head, then follow live.

A subscription reads fenced pages (``EventStore.read_all``) and, when it has caught up,
waits for a wake-up (in-process after a local commit, or a NOTIFY from another process)
or for its poll interval. It never trusts a notification to carry anything, so a missed
wake-up only delays it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from events import models, store


class Subscription:
    """Pages of events after ``after`` that match ``filter``, forever.

    ``checkpoint`` is where the subscription stands: the last event of the last page it
    yielded. A consumer that persists its own checkpoint resumes by passing it as ``after``.
    """

    def __init__(
        self,
        event_store: store.EventStore,
        *,
        after: models.Checkpoint = models.ORIGIN,
        filter: store.EventFilter = store.ALL,
        batch_size: int = 500,
        poll_interval_s: float = 1.0,
    ) -> None:
        self.store = event_store
        self.checkpoint = after
        self.filter = filter
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.caught_up = asyncio.Event()
        """Set while the subscription has read everything and waits for more."""

    async def pages(self) -> AsyncIterator[list[models.RecordedEvent]]:
        """Yield non-empty pages in global order; after catching up, wait and yield more."""
        # After a wake-up the new commit may still sit behind the fence (an older
        # transaction is in flight): retry soon, backing off to the poll interval.
        retry_s = self.poll_interval_s
        while True:
            token = self.store.wakeup.token()
            page = await self.store.read_all(
                self.checkpoint, filter=self.filter, limit=self.batch_size
            )
            if page:
                self.checkpoint = page[-1].checkpoint
                yield page
                if len(page) == self.batch_size:
                    continue
            self.caught_up.set()
            woken = await self.store.wakeup.wait(token, retry_s)
            self.caught_up.clear()
            retry_s = 0.005 if woken else min(retry_s * 2, self.poll_interval_s)

    async def __aiter__(self) -> AsyncIterator[models.RecordedEvent]:
        async for page in self.pages():
            for event in page:
                yield event
