"""Concurrent reads of one kind coalesced into one query: while a query is in flight, the keys
asked for meanwhile wait and then go together in the next one.

Under load many requests read the same kind of row at once (a new token's owner, by name): each
read was a pool borrow and a round trip of its own, a large part of the hub's CPU for such a
request. Here the first caller that finds no query in flight runs one for every key waiting
(its own included); the others wait for its answer, or for their turn to run the next one.
Nothing runs in the background: a query runs in the task of the caller that leads it.

Every unanswered caller's future is either waiting (``_waiting``) or in the query in flight,
so a caller whose future is not done finds a key to read whenever no query is in flight. A
leader cancelled mid-query puts its keys' futures back (beside any that callers asked for
meanwhile under the same key), for the next caller to read. An error reading (the database
unavailable) is every waiting caller's: each re-raises that same exception object, as
``asyncio.gather``'s callers do. Inside ``EventStore.pinned`` (a request's own transaction) a
read goes alone, on that transaction's connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar

from events import sql, store

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

Fetch = Callable[[sql.Connection, list[K]], Awaitable[Mapping[K, V]]]


class Coalesced(Generic[K, V]):
    """Reads by key through ``fetch`` (the rows of the keys it finds, by key), coalesced."""

    def __init__(self, event_store: store.EventStore, fetch: Fetch[K, V]) -> None:
        self._store = event_store
        self._fetch = fetch
        # Each key's futures: normally one that its callers share; more after a cancelled
        # leader put its key back while a newer caller waited under it already.
        self._waiting: dict[K, list[asyncio.Future[V | None]]] = {}
        self._busy = False
        self._turn: asyncio.Future[None] | None = None
        self.queries = 0
        """Queries run so far (for tests and the benchmark)."""

    async def get(self, key: K) -> V | None:
        """The row of ``key``, or None where there is none."""
        if self._store.pinned_here():
            async with self._store.connection() as conn:
                self.queries += 1
                return (await self._fetch(conn, [key])).get(key)
        futures = self._waiting.get(key)
        found: asyncio.Future[V | None]
        if futures is None:
            found = asyncio.get_running_loop().create_future()
            self._waiting[key] = [found]
        else:
            found = futures[0]
        while not found.done():
            if not self._busy:
                if not self._waiting:  # cannot happen (see the module's docstring)
                    raise RuntimeError(f"coalesced read of {key!r} lost its future")
                await self._lead()
                continue
            if self._turn is None:
                self._turn = asyncio.get_running_loop().create_future()
            await asyncio.wait((found, self._turn), return_when=asyncio.FIRST_COMPLETED)
        return found.result()

    async def _lead(self) -> None:
        """Read every key waiting, in one query, and answer their callers."""
        batch, self._waiting = self._waiting, {}
        self._busy = True
        try:
            async with self._store.connection() as conn:
                self.queries += 1
                rows = await self._fetch(conn, list(batch))
        except asyncio.CancelledError:
            # our caller is gone, not the others: their keys go to the next query, beside
            # the futures of callers that asked for the same key meanwhile
            for key, futures in batch.items():
                self._waiting.setdefault(key, []).extend(futures)
            raise
        except Exception as exc:  # noqa: BLE001 - every caller waiting gets it
            for futures in batch.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
                        # a caller cancelled meanwhile never retrieves it: no "never
                        # retrieved" warning for that one (the others still raise it)
                        future.exception()
        else:
            for key, futures in batch.items():
                for future in futures:
                    if not future.done():
                        future.set_result(rows.get(key))
        finally:
            self._busy = False
            turn, self._turn = self._turn, None
            if turn is not None and not turn.done():
                turn.set_result(None)  # a waiter whose key was not in this query may lead
