"""Runs the asynchronous projections: each follows the log and commits its checkpoint with its rows.

Per batch, in one transaction: take the projection's advisory lock (so several hub
processes never apply the same batch), read the checkpoint, read a fenced page, apply it,
write the checkpoint. A crash or cancellation mid-batch rolls all of it back; the next
batch starts from the last committed checkpoint, so each event takes effect exactly once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from events import errors, models, sql, store, tasks
from projections import base

log = logging.getLogger(__name__)
queries = sql.Queries(__package__ or "projections", "checkpoints.sql")


class AsyncRunner:
    """Owns one task per asynchronous projection; ``start``/``stop`` or ``async with``."""

    def __init__(
        self,
        event_store: store.EventStore,
        projections: Iterable[base.Projection],
        *,
        batch_size: int = 1000,
        poll_interval_s: float = 1.0,
        retry_s: float = 1.0,
    ) -> None:
        self.store = event_store
        self.projections = [p for p in projections if p.mode == "async"]
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.retry_s = retry_s
        self._tasks = tasks.TaskOwner("projection", logger=log)

    async def start(self) -> None:
        """Start following the log, one named task per projection."""
        for projection in self.projections:
            self._tasks.start(self._follow(projection), f"chronohub-projection-{projection.name}")

    async def stop(self) -> None:
        """Cancel every task and wait for it; a batch in flight is rolled back."""
        await self._tasks.close()

    async def __aenter__(self) -> AsyncRunner:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _follow(self, projection: base.Projection) -> None:
        retry_s = self.poll_interval_s
        while True:
            token = self.store.wakeup.token()
            try:
                applied = await step(self.store, projection, self.batch_size)
            except (base.ProjectionError, errors.DatabaseUnavailable) as exc:
                # Nothing of the batch was committed; try again from the same checkpoint.
                log.error("projection %s failed a batch: %s", projection.name, exc)
                await asyncio.sleep(self.retry_s)
                continue
            if applied >= self.batch_size:
                continue
            if await self.store.wakeup.wait(token, retry_s):
                retry_s = 0.005
            else:
                retry_s = min(retry_s * 2, self.poll_interval_s)


async def step(event_store: store.EventStore, projection: base.Projection, batch_size: int) -> int:
    """Apply at most one batch to ``projection``; return how many events it applied.

    Returns 0 when another worker holds the projection or nothing is new.
    """
    async with event_store.connection() as conn, conn.transaction():
        if not await conn.fetchval(queries["lock"], projection.name):
            return 0
        await conn.execute(queries["ensure"], projection.name)
        row = await conn.fetchrow(queries["get"], projection.name)
        assert row is not None  # ensured just above, in this transaction
        after = models.Checkpoint(int(row["tx"]), row["position"])
        # Everything up to the head seen *before* the read is covered by the read's fence:
        # a short page lets a sparse projection skip the unrelated events in between.
        head = await event_store.head(conn=conn)
        page = await event_store.read_all(
            after,
            filter=store.EventFilter(types=projection.handles),
            limit=batch_size,
            conn=conn,
        )
        if page:
            await projection.apply(conn, page)
        new = page[-1].checkpoint if page else after
        if len(page) < batch_size and head > new:
            new = head
        if new != after:
            await conn.execute(queries["set"], projection.name, str(new.tx), new.position)
        return len(page)
