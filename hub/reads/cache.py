"""Answers of read models that services ask for again and again, remembered in the hub
process (issue 20 part 4): the users list's pages, the rows it is built from, and the groups
list's pages.

A service that polls ``GET /hub/api/users`` (the idle culler, a dashboard) gets the same
page until something on it changes, and building it cost PostgreSQL alone more than four
times what a bare aiohttp application spends on a whole request. So each process keeps
query -> answer, keyed by the query's name and every argument it was run with (what the
caller may see is decided from those arguments by the handler, never from a remembered
answer), and forgets everything, with the same guarantees as the token cache
(``hub/auth/token_cache.py``, whose notifications and membership it shares):

* an event that changes the tables the answers come from (``CHANGING``: users, groups and
  their members, role grants, servers) and a ``last_activity`` moved (the ``activity`` and
  ``server_activity`` tables, written beside the log, without an event) make PostgreSQL
  notify ``chronohub_auth`` at commit (``migrations/0022_read_cache.sql``); each process
  empties its cache on the notification, and the writing request answers only once every
  other process acknowledged it (``hub/auth/token_acks.py``);
* in the writing process at once: the event store's append hook (``changed_by``) and the
  code that moves activity (``hub/auth/access.py``, ``hub/api/users.py``, the proxy's
  activity) empty it, and again after the commit;
* nothing is served, nor kept, while the token cache is not serving (its LISTEN connection
  down, or its membership's lease lapsed); a fill that began before an invalidation is not
  kept (``generation``); at most ``max_entries`` answers, the least recently used go first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar, cast

from projections import catalog

T = TypeVar("T")

# The read-model tables the remembered answers come from (hub/reads/users.sql,
# hub/servers/servers.sql): the events that change them are those their projections handle.
TABLES = frozenset({"users", "groups", "group_members", "roles", "role_grants", "servers"})
CHANGING = frozenset().union(*(p.handles for p in catalog.ALL if not TABLES.isdisjoint(p.tables)))
MAX_ENTRIES = 256

MISSING: Any = object()  # what ``get`` answers for an answer it does not hold


class ReadCache:
    """Query key -> answer, emptied by every ``chronohub_auth`` notification (see module doc).

    ``serving`` says whether notifications reach this process now (the token cache's
    ``serving``); while it is false nothing is served or kept. ``max_entries`` 0: nothing is
    ever kept.
    """

    def __init__(self, serving: Callable[[], bool], *, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self.generation = 0
        self._serving = serving
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> Any:
        """The answer remembered under ``key``, or ``MISSING`` (and the cache emptied when
        it is not serving: what it holds may be stale)."""
        if not self._serving():
            if self._entries:
                self.invalidate()
            self.misses += 1
            return MISSING
        found = self._entries.get(key, MISSING)
        if found is MISSING:
            self.misses += 1
            return MISSING
        self._entries.move_to_end(key)
        self.hits += 1
        return found

    def put(self, key: Hashable, value: Any, generation: int) -> None:
        """Remember ``value`` under ``key``, unless the cache was invalidated since
        ``generation`` (read before the query that produced it) or is not serving."""
        if generation != self.generation or self.max_entries <= 0 or not self._serving():
            return
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def invalidate(self) -> None:
        """Forget every answer, and any fill still under way."""
        self.generation += 1
        self._entries.clear()

    def changed_by(self, types: Any) -> bool:
        """The event store's append hook: forget everything if this process committed an
        event that changes what the answers come from; whether it did."""
        if CHANGING.isdisjoint(types):
            return False
        self.invalidate()
        return True

    async def fetch(self, key: Hashable, pool: Any, load: Callable[[Any], Awaitable[T]]) -> T:
        """The answer under ``key``: remembered, or ``load(conn)`` on a connection of
        ``pool`` (borrowed only then), remembered if no invalidation overtook it."""
        found = self.get(key)
        if found is not MISSING:
            return cast("T", found)
        generation = self.generation
        async with pool.acquire() as conn:
            value = await load(conn)
        self.put(key, value, generation)
        return value


async def fetch(
    cache: ReadCache | None, key: Hashable, pool: Any, load: Callable[[Any], Awaitable[T]]
) -> T:
    """``cache.fetch``, or ``load`` on a connection of ``pool`` when there is no cache."""
    if cache is not None:
        return await cache.fetch(key, pool, load)
    async with pool.acquire() as conn:
        return await load(conn)
