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
  their members, role grants, servers) makes PostgreSQL notify ``chronohub_auth`` at commit
  (``migrations/0022_read_cache.sql``), and so does a rebuild's swap of the read models (an
  import); each process empties its cache on the notification, and the writing request
  answers only once every other process acknowledged it (``hub/auth/token_acks.py``);
* in the writing process at once: the event store's append hook (``changed_by``) empties it,
  and again after the commit;
* ``last_activity`` is the exception: it is written beside the log without an event, often
  (a token's first use every 30 s, browsers' requests, activity reports, the proxy's poll),
  and those writes notify nothing, lock nothing and wait for nobody. Instead an answer is
  kept at most ``max_age_s`` (``MAX_AGE_S``, 30 s, the bound the token cache already puts on
  whoami's ``last_activity``): the list's ``last_activity`` lags by at most that, in every
  process, the writer's included (JupyterHub's proxy poll moves it every 300 s, the idle
  culler's timeouts are minutes); everything the log changes is read-your-writes;
* nothing is served, nor kept, while the token cache is not serving (its LISTEN connection
  down, or its membership's lease lapsed); a fill that began before an invalidation is not
  kept (``generation``); at most ``max_entries`` answers, the least recently used go first.
"""

from __future__ import annotations

import time
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
MAX_AGE_S = 30.0  # as hub/auth/token_cache.py's MAX_AGE_S: how stale last_activity may be

MISSING: Any = object()  # what ``get`` answers for an answer it does not hold


class ReadCache:
    """Query key -> answer, emptied by every ``chronohub_auth`` notification (see module doc).

    ``serving`` says whether notifications reach this process now (the token cache's
    ``serving``); while it is false nothing is served or kept. ``max_entries`` 0: nothing is
    ever kept. An answer older than ``max_age_s`` (seconds since its query began) is read
    again.
    """

    def __init__(
        self,
        serving: Callable[[], bool],
        *,
        max_entries: int = MAX_ENTRIES,
        max_age_s: float = MAX_AGE_S,
    ) -> None:
        self.max_entries = max_entries
        self.max_age_s = max_age_s
        self.generation = 0
        self._serving = serving
        # key -> (time.monotonic() when its query began, answer)
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> Any:
        """The answer remembered under ``key``, or ``MISSING``: none, or older than
        ``max_age_s`` (then forgotten), or the cache is not serving (then emptied: what it
        holds may be stale)."""
        if not self._serving():
            if self._entries:
                self.invalidate()
            self.misses += 1
            return MISSING
        found = self._entries.get(key)
        if found is None:
            self.misses += 1
            return MISSING
        started, value = found
        if time.monotonic() - started > self.max_age_s:
            del self._entries[key]
            self.misses += 1
            return MISSING
        self._entries.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: Hashable, value: Any, generation: int, started: float | None = None) -> None:
        """Remember ``value`` under ``key``, unless the cache was invalidated since
        ``generation`` (read before the query that produced it) or is not serving.
        ``started``: the ``time.monotonic()`` instant its query began (default: now), from
        which its age counts."""
        if generation != self.generation or self.max_entries <= 0 or not self._serving():
            return
        self._entries[key] = (time.monotonic() if started is None else started, value)
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
        generation, started = self.generation, time.monotonic()
        async with pool.acquire() as conn:
            value = await load(conn)
        self.put(key, value, generation, started)
        return value


async def fetch(
    cache: ReadCache | None, key: Hashable, pool: Any, load: Callable[[Any], Awaitable[T]]
) -> T:
    """``cache.fetch``, or ``load`` on a connection of ``pool`` when there is no cache."""
    if cache is not None:
        return await cache.fetch(key, pool, load)
    async with pool.acquire() as conn:
        return await load(conn)
