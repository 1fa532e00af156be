"""The callers tokens resolve to, remembered in the hub process (issue 20 part 4).

Resolving a token (``access.lookup``: the token, its owner, the owner's roles, groups and
shares) was most of what a request with a token cost, and a token's next request resolves
the same way. So each hub process keeps token hash -> what it resolved to, and forgets it
all when anything it was worked out from changes:

* in any process: an event that changes tokens, users, groups, roles, shares or services
  fires a trigger on the event log (``migrations/0018_token_cache_and_users_json.sql``)
  that NOTIFYs
  ``chronohub_auth`` from inside the appending transaction, delivered when, and only if, it
  commits. Every process LISTENs (on a connection of its own, ``notify.Channel``) and empties
  its cache on each notification;
* in this process, at once: the event store tells ``on_append`` the types of each committed
  append, before the request that appended answers, so this process's next request never
  sees what it just revoked;
* while the LISTEN connection is down, nothing is served from the cache (a notification sent
  meanwhile would be lost), and it is emptied again when the connection is back;
* in every other process before the request that committed the event answers: each cache
  acknowledges the notifications it handled, and that request waits for the
  acknowledgements (``hub/auth/token_acks.py``); a cache serves only while its membership's
  lease holds, so one that stopped answering is waited for at most that long.

What is not invalidated but checked at each use: a token's expiry (kept with the entry).
A fill that started before an invalidation is not stored (``generation``), so a lookup that
read the old state cannot put it back after the notification emptied the cache. Entries also
age out after ``max_age_s``: the whoami profile's ``last_activity`` (which other processes
and servers move without an event) is then read again.

The hub's read cache (``hub/reads/cache.py``) shares these notifications and this membership:
it is one of ``followers``, emptied whenever this cache is, and also on the notifications
that concern only it (a payload ``"<n> reads"``: a user created, a server's state moved),
which leave the tokens' entries alone. (A process of a version before the read cache reads
such a payload as no number: it empties its cache and acknowledges nothing, so processes of
the two versions must not serve together: docs/operations.md, upgrades.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from events import notify
from hub.auth import token_acks

log = logging.getLogger(__name__)

CHANNEL = "chronohub_auth"
APPLICATION_NAME = "chronohub token cache"
MAX_ENTRIES = 20_000
MAX_AGE_S = 30.0

# The event types that change what a token resolves to: the trigger's list in
# migrations/0018_token_cache_and_users_json.sql (tests/integration/test_token_cache.py
# checks that they agree).
INVALIDATING = frozenset(
    {
        "token.revoked",
        "user.deleted",
        "user.renamed",
        "user.admin_changed",
        "group.created",
        "group.deleted",
        "group.members_added",
        "group.members_removed",
        "group.properties_set",
        "role.defined",
        "role.granted",
        "role.removed",
        "role.revoked",
        "share.granted",
        "share.revoked",
        "share.code_accepted",
        "service.registered",
        "service.removed",
        "oauth_client.removed",
        # a server removed or renamed drops or moves the shares of it (projections/shares.py),
        # which a caller's !server= scopes were worked out from
        "server.removed",
        "server.renamed",
    }
)


@dataclass
class Entry:
    """What a token resolved to: the caller (``access.Caller``), when the token expires (a
    ``time.time()`` instant, or None), and for a user's token the user's profile as whoami
    shows it (name, admin, groups, created, last_activity)."""

    caller: Any
    expires_at: float | None
    profile: dict[str, Any] | None
    filled: float = field(default_factory=time.monotonic)
    # whoami's answer, encoded once (hub/api/root.py); None again when the profile moves
    whoami: bytes | None = None


class TokenCache:
    """Token hash -> ``Entry``, emptied by ``chronohub_auth`` notifications (see module doc).

    Use as ``async with TokenCache(dsn)`` or ``start()``/``stop()``; not started, it serves
    nothing (every lookup goes to the database).
    """

    def __init__(
        self,
        dsn: str | None,
        *,
        max_entries: int = MAX_ENTRIES,
        max_age_s: float = MAX_AGE_S,
        reconnect_s: float = 1.0,
        lease_s: float = token_acks.LEASE_S,
    ) -> None:
        self.max_entries = max_entries
        self.max_age_s = max_age_s
        self._entries: dict[bytes, Entry] = {}
        self.generation = 0
        self._channel = notify.Channel(
            dsn,
            CHANNEL,
            self._on_message,
            reconnect_s=reconnect_s,
            connect_kwargs={"server_settings": {"application_name": APPLICATION_NAME}},
        )
        self.listening = self._channel.listening
        self.membership = token_acks.Membership(
            dsn, self.invalidate, self.listening, lease_s=lease_s, reconnect_s=reconnect_s
        )
        self.hits = 0
        self.misses = 0
        # Other caches these notifications keep true (the read cache): emptied with this one,
        # and alone on a notification that concerns only them.
        self.followers: list[Callable[[], None]] = []

    async def start(self) -> None:
        """Start listening; entries are served once the LISTEN connection is up and the
        membership joined."""
        await self._channel.start()
        await self.membership.start()

    async def stop(self) -> None:
        """Leave, stop listening and forget everything."""
        await self.membership.stop()
        await self._channel.stop()
        self.invalidate()

    async def __aenter__(self) -> TokenCache:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def __len__(self) -> int:
        return len(self._entries)

    def serving(self) -> bool:
        """Whether entries are served: listening, and the membership's lease holds."""
        return self.listening.is_set() and self.membership.holds(time.monotonic())

    def get(self, digest: bytes) -> Entry | None:
        """The live entry of this token hash, or None: unknown, expired, too old, or the
        cache is not serving (then it is emptied: what it holds may be stale)."""
        now = time.monotonic()
        if not self.listening.is_set() or not self.membership.holds(now):
            if self._entries:
                self.invalidate()
            self.misses += 1
            return None
        entry = self._entries.get(digest)
        if entry is None:
            self.misses += 1
            return None
        if (entry.expires_at is not None and entry.expires_at <= time.time()) or (
            now - entry.filled > self.max_age_s
        ):
            del self._entries[digest]
            self.misses += 1
            return None
        self.hits += 1
        return entry

    def put(self, digest: bytes, entry: Entry, generation: int) -> None:
        """Remember ``entry``, unless the cache was invalidated since ``generation`` (read
        before the lookup that produced it) or is not serving."""
        if generation != self.generation or not self.serving():
            return
        if len(self._entries) >= self.max_entries:
            # Oldest first (dicts keep insertion order): a token still in use comes back.
            del self._entries[next(iter(self._entries))]
        self._entries[digest] = entry

    def invalidate(self) -> None:
        """Forget every entry, and any fill still under way (the followers' too)."""
        self.generation += 1
        self._entries.clear()
        self.invalidate_followers()

    def invalidate_followers(self) -> None:
        """Empty the followers only (what changed resolves no token differently)."""
        for forget in self.followers:
            forget()

    def on_append(self, types: Any) -> None:
        """The event store's append hook: forget everything if this process committed an
        event that changes what tokens resolve to (and then the request that appended it
        waits for the other processes' acknowledgements: ``acknowledged``)."""
        if not INVALIDATING.isdisjoint(types):
            self.invalidate()
            token_acks.mark_committed()

    async def acknowledged(self, pool: Any, *, tokens: bool = True) -> None:
        """After this task's invalidating events committed: forget again (a lookup between
        the append and its commit read the old state; with ``tokens`` false, only the
        followers), then wait until every other process's cache has handled them (bounded by
        the membership's lease)."""
        if tokens:
            self.invalidate()
        else:
            self.invalidate_followers()
        await self.membership.wait_for_others(pool)

    def _on_message(self, payload: str | None) -> None:
        # None: the LISTEN connection (re)connected, and whatever was sent while it was
        # down is unknown. A payload: an invalidating event committed somewhere.
        if payload is None:
            log.info("token cache listening; emptied")
            self.invalidate()
            self.membership.reconnected()
            return
        text, _, kind = payload.partition(" ")
        if kind == "reads":
            self.invalidate_followers()
        else:
            self.invalidate()
        try:
            number = int(text)
        except ValueError:  # not a numbered notification: nothing to acknowledge
            return
        self.membership.handled(number)
