"""Revocation immediate across processes: each token cache acknowledges the notifications it
handled, and a request that committed an invalidating event waits for every live cache's
acknowledgement before it answers (issue 20 part 4).

Every hub process's token cache is a *member*: a row of ``token_cache_members`` that its
``Membership`` task renews (a lease of ``lease_s``) while its LISTEN connection is up, and in
which it records the largest notification number it has handled (``seen``): the cache is
emptied first, then the number is written. Numbers follow commit order
(``migrations/0021_token_cache_acknowledgements.sql``), so ``seen >= n`` means every
invalidation up to ``n`` has been handled.

A request whose task committed such an event (``mark_committed``, from the event store's
``on_append`` hook) is held by ``hub.auth.access.middleware`` after its transaction
committed (outside the idempotency middleware, which commits an idempotent request's events
when it returns) until every other member whose lease is live has ``seen`` the last number
drawn. A member that does not answer stops being waited for when its lease runs out (at most
``lease_s``), and is named in a warning; its cache serves nothing from then on, because a
member serves from its cache only while its own lease holds (its local deadline runs out no
later than the row's ``alive_until``), and when it renews after a lapse it joins again,
emptied. Joining (at start, after the LISTEN connection is back, after a lapse) takes the
invalidating commits' lock: every number drawn so far is then committed, and the cache
emptied after it may acknowledge them all.

The read cache (``hub/reads/cache.py``) is kept true by the same notifications and
acknowledgements: a request that committed an event changing what it holds (a user created,
a server's state: ``READS``) waits the same way, with the token caches left alone.

Costs: each process one more connection and a heartbeat statement every ``lease_s / 4``; an
invalidating request (``AUTH`` or ``READS``) two or three more round trips (a few milliseconds
while every process answers; a stalled process, until its lease runs out); nothing for any
other request: reads, token issues and ``last_activity`` writes (a token's use, activity
reports, the proxy's poll) notify nothing and wait for nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

import asyncpg

from events import errors, sql, tasks

log = logging.getLogger(__name__)

queries = sql.Queries(__package__ or "hub.auth", "token_acks.sql")

APPLICATION_NAME = "chronohub token cache member"
LEASE_S = 2.0
# How long a request that committed an invalidation waits at most, beyond the lease: members
# that do not answer drop out when their lease runs out, so this only bounds a slow database.
EXTRA_WAIT_S = 1.0

# Set by ``middleware`` for each request: a list that ``mark_committed`` appends to (a list,
# not a flag, so that tasks the handler starts, which copy the context, mark the same one).
_COMMITTED: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "token_acks_committed", default=None
)
AUTH = "auth"  # what tokens resolve to changed (and what the read cache holds)
READS = "reads"  # only what the read cache holds changed (hub/reads/cache.py)


def watching() -> list[str]:
    """For the request about to run on this task: a list that ``mark_committed`` makes
    non-empty, of the kinds committed (``access.middleware`` then waits for the
    acknowledgements)."""
    holder: list[str] = []
    _COMMITTED.set(holder)
    return holder


def mark_committed(kind: str = AUTH) -> None:
    """This task committed a change of ``kind`` (``AUTH`` or ``READS``) that other processes'
    caches hold: its request must wait for their acknowledgements before it answers."""
    holder = _COMMITTED.get()
    if holder is not None and kind not in holder:
        holder.append(kind)


def member_name() -> str:
    """This process's name in ``token_cache_members``: host, process id and a random tail
    (process ids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Membership:
    """One cache's row in ``token_cache_members`` and the owned task that keeps it: joins,
    renews every ``lease_s / 4``, acknowledges handled notifications, leaves at ``stop``.

    ``invalidate`` empties the cache; ``listening`` is set while its LISTEN connection is up.
    The cache serves entries only while ``holds()``.
    """

    def __init__(
        self,
        dsn: str | None,
        invalidate: Callable[[], None],
        listening: asyncio.Event,
        *,
        lease_s: float = LEASE_S,
        reconnect_s: float = 1.0,
    ) -> None:
        self.name = member_name()
        self.lease_s = lease_s
        self.lease_until = 0.0  # time.monotonic(): no later than the row's alive_until
        self._dsn = dsn
        self._invalidate = invalidate
        self._listening = listening
        self._reconnect_s = reconnect_s
        self._seen = 0  # the largest notification number handled (the cache emptied)
        self._acknowledged = 0  # the largest one written
        self._epoch = 0  # moved on by each (re)connection of the LISTEN connection
        self._joined_epoch = -1  # the epoch this member last joined in
        self._wake = asyncio.Event()
        self._conn: asyncpg.Connection[Any] | None = None
        self._tasks = tasks.TaskOwner("token cache membership", logger=log)

    def holds(self, now: float) -> bool:
        """Whether the lease holds at ``now`` (``time.monotonic()``)."""
        return now < self.lease_until

    def handled(self, number: int) -> None:
        """The cache was emptied for notification ``number``: acknowledge it soon."""
        if number > self._seen:
            self._seen = number
            self._wake.set()

    def reconnected(self) -> None:
        """The LISTEN connection is (back) up: notifications may have been missed, join again."""
        self._epoch += 1
        self._wake.set()

    @property
    def _joined(self) -> bool:
        return self._joined_epoch == self._epoch

    async def start(self) -> None:
        self._tasks.start(self._run(), "token-cache-member")

    async def stop(self) -> None:
        """Stop renewing, and leave (best effort: a row left behind expires)."""
        await self._tasks.close()
        self.lease_until = 0.0
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        try:
            with sql.translated():
                await conn.execute(queries["member_leave"], self.name, timeout=2.0)
        except (errors.DatabaseUnavailable, TimeoutError) as exc:
            log.warning(
                "token cache member %s could not leave (%s); its row expires", self.name, exc
            )
        finally:
            await conn.close()

    async def _run(self) -> None:
        heartbeat_s = self.lease_s / 4
        while True:
            self._wake.clear()  # before the step: what is handled meanwhile sets it again
            try:
                with sql.translated():
                    await self._step()
            except (errors.DatabaseUnavailable, TimeoutError) as exc:
                # The lease runs out by itself: waiters stop waiting, the cache stops serving.
                log.warning("token cache member %s: %s; retrying", self.name, exc)
                if self._conn is not None and not self._conn.is_closed():
                    self._conn.terminate()
                self._conn = None
                self._joined_epoch = -1
                await asyncio.sleep(self._reconnect_s)
                continue
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation
            # that arrives as the wait ends, and then stop() would wait for this loop forever
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(heartbeat_s):
                    await self._wake.wait()

    async def _step(self) -> None:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(
                self._dsn, server_settings={"application_name": APPLICATION_NAME}
            )
        conn = self._conn
        timeout = self.lease_s  # a statement slower than the lease is a lapse anyway
        if not self._listening.is_set():
            # Not listening: serving nothing, and not to be waited for.
            self.lease_until = 0.0
            if self._joined_epoch >= 0:
                await conn.execute(queries["member_leave"], self.name, timeout=timeout)
                self._joined_epoch = -1
            return
        started = time.monotonic()
        if self._joined and started < self.lease_until:
            seen = self._seen
            renewed = await conn.fetchval(
                queries["member_renew"], self.name, seen, self.lease_s, timeout=timeout
            )
            if renewed is not None:
                self._acknowledged = max(self._acknowledged, seen)
                self.lease_until = started + self.lease_s
                return
        # Join (again): at start, after the LISTEN connection came back, after a lapse.
        self.lease_until = 0.0
        epoch = self._epoch
        async with conn.transaction():
            joined = await conn.fetchrow(queries["member_join"], timeout=timeout)
            assert joined is not None  # a SELECT without FROM: one row
            drawn = joined[1]
            self._invalidate()  # every number up to `drawn` is committed: forget what preceded
            seen = max(self._seen, drawn)
            await conn.execute(
                queries["member_register"], self.name, seen, self.lease_s, timeout=timeout
            )
        self._seen = self._acknowledged = seen
        self._joined_epoch = epoch  # not joined if the LISTEN connection came back meanwhile
        self.lease_until = started + self.lease_s

    async def wait_for_others(self, pool: asyncpg.Pool[Any]) -> None:
        """After this task committed an invalidating event: return once every other live
        member has handled it (or stopped being live); a warning names those that did not
        acknowledge."""
        try:
            with sql.translated():
                await self._wait_for_others(pool)
        except (errors.DatabaseUnavailable, TimeoutError) as exc:
            # The request's events are committed: it answers; the leases bound the rest.
            log.warning("token cache invalidation: could not wait for acknowledgements (%s)", exc)

    async def _wait_for_others(self, pool: asyncpg.Pool[Any]) -> None:
        deadline = time.monotonic() + self.lease_s + EXTRA_WAIT_S
        lapsed: list[str] = []
        async with pool.acquire() as conn:
            first = await conn.fetchrow(queries["member_waiting_for"], self.name)
            assert first is not None  # the sequence's one row
            number, pending = first["n"], list(first["pending"])
            pause = 0.002
            # Polled, with a growing pause: acknowledgements take a round trip or two, and
            # waking on them (a notification per acknowledgement) would cost every process.
            while pending and time.monotonic() < deadline:
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.05)
                rows = {
                    row["member"]: row
                    for row in await conn.fetch(queries["member_progress"], pending, number)
                }
                waiting = []
                for member in pending:
                    row = rows.get(member)
                    if row is None or (not row["acknowledged"] and not row["alive"]):
                        lapsed.append(member)
                    elif not row["acknowledged"]:
                        waiting.append(member)
                pending = waiting
        if lapsed or pending:
            log.warning(
                "token cache invalidation %d: not acknowledged by %s (their leases ran out,"
                " or the wait's bound passed); answering anyway",
                number,
                ", ".join(sorted(lapsed + list(pending))),
            )
