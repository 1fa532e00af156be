"""Watching the database: outages logged once, the embedded server restarted, health told.

``DatabaseWatch`` is what the hub knows of its database's state. The error middleware reports
each request that met an unavailable database (``failed``): the first of an outage is logged
as a warning, the rest at debug level, so a stall under load does not flood the log. A probe
task (``SELECT 1`` every second, bounded like any statement) tells when the database answers
again, logs the outage's end and its length, and notices a slow database. When the hub runs
the embedded PostgreSQL, the same task restarts it if its postmaster died: PostgreSQL
recovers from its write-ahead log, the pool's broken connections are replaced as they are
borrowed, and requests answer 503 with ``Retry-After`` meanwhile.

``/hub/health`` reads ``status``: degraded while the database does not answer, answers slowly
or failed a request in the last few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp import web

from events import errors as event_errors
from events import sql, tasks
from hub import embedded_db

log = logging.getLogger(__name__)

# How long a client should wait before trying again (Retry-After); the probe runs this often
# and the embedded server restarts within a few seconds, so a short wait is the honest one.
RETRY_AFTER_S = 2
PROBE_INTERVAL_S = 1.0
# A probe slower than this says the database is slow (health: degraded).
SLOW_S = 1.0
# An outage lasts until no request has met an unavailable database for this long.
RECENT_S = 2.0


@dataclass(frozen=True)
class Status:
    """The database as ``/hub/health`` reports it."""

    ok: bool
    database: str  # "ok", "slow" or "unavailable"
    reason: str | None = None


class DatabaseWatch:
    """The database's state, the probe task and the embedded server's supervisor.

    ``async with DatabaseWatch(pool, embedded=...)`` runs the probe until the block ends
    (unless ``probing`` is off: one-shot commands).
    """

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        *,
        embedded: embedded_db.EmbeddedPostgres | None = None,
        probe_timeout: float = 5.0,
        interval: float = PROBE_INTERVAL_S,
        probing: bool = True,
        dsn: str | None = None,
    ) -> None:
        self.pool = pool
        # The probe's own connection (with ``dsn``): a pool that requests hold, every
        # connection waiting on a slow statement, must not read as a database that does not
        # answer. Without it, the probe borrows from the pool.
        self.dsn = dsn
        self._conn: asyncpg.Connection[Any] | None = None
        self.embedded = embedded
        self.probe_timeout = probe_timeout
        self.interval = interval
        self.probing = probing
        self.outage_since: float | None = None
        """When (monotonic) the current outage began; None while the database answers."""
        self.reason: str | None = None
        self.last_failure: float | None = None
        self.last_probe_s: float | None = None
        self.last_answer: float | None = None
        """When (monotonic) the probe last had an answer."""
        self.restarts = 0
        self._wake = asyncio.Event()
        self._tasks = tasks.TaskOwner("database watch", logger=log)

    async def __aenter__(self) -> DatabaseWatch:
        if self.probing:
            self._tasks.start(self._run(), "chronohub-database-watch")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._tasks.close()
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None

    # --- what requests report -----------------------------------------------------------------

    def failed(self, error: event_errors.DatabaseUnavailable) -> None:
        """A request met an unavailable database: log the outage's start once."""
        now = time.monotonic()
        self.last_failure = now
        if self.outage_since is None:
            self.outage_since = now
            self.reason = str(error)
            log.warning(
                "the database cannot serve (%s): requests answer 503 with Retry-After until it"
                " returns",
                self.reason,
            )
            self._wake.set()
        else:
            log.debug("the database still cannot serve: %s", error)

    def status(self) -> Status:
        """The state ``/hub/health`` reports (from the last probe and requests)."""
        if self.outage_since is not None:
            if self.last_answer is not None and self.last_answer > self.outage_since:
                # SELECT 1 answers while requests fail: a slow database (or a full disk)
                return Status(False, "slow", f"requests fail while it answers: {self.reason}")
            return Status(False, "unavailable", self.reason)
        if self.last_probe_s is not None and self.last_probe_s > SLOW_S:
            return Status(False, "slow", f"SELECT 1 took {self.last_probe_s:.2f} s")
        return Status(True, "ok")

    def _failed_recently(self) -> bool:
        return self.last_failure is not None and time.monotonic() - self.last_failure < RECENT_S

    # --- the probe ----------------------------------------------------------------------------

    async def probe(self) -> float:
        """Ask the database ``SELECT 1`` (bounded); the seconds it took. Raises
        ``DatabaseUnavailable`` (and records the outage) if it cannot answer."""
        started = time.monotonic()
        try:
            with sql.translated():
                await self._select_one()
        except event_errors.DatabaseUnavailable as exc:
            self.failed(exc)
            raise
        except TimeoutError as exc:  # the probe's own statement bound
            unavailable = event_errors.DatabaseUnavailable(
                f"SELECT 1 did not answer within {self.probe_timeout} s"
            )
            unavailable.__cause__ = exc
            self.failed(unavailable)
            raise unavailable from exc
        self.last_answer = time.monotonic()
        took = self.last_answer - started
        self.last_probe_s = took
        # Over when the database answers and no request has failed for a while: a slow
        # database answers the probe while requests time out, and would otherwise start and
        # end an outage (two log lines) every second.
        if self.outage_since is not None and not self._failed_recently():
            log.warning(
                "the database answers again, after %.1f s unavailable",
                time.monotonic() - self.outage_since,
            )
            self.outage_since = None
        return took

    async def _select_one(self) -> None:
        if self.dsn is None:
            async with self.pool.acquire(timeout=self.probe_timeout) as conn:
                await conn.fetchval("SELECT 1", timeout=self.probe_timeout)
            return
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(self.dsn, timeout=self.probe_timeout)
        try:
            await self._conn.fetchval("SELECT 1", timeout=self.probe_timeout)
        except BaseException:
            broken, self._conn = self._conn, None
            broken.terminate()  # a connection whose answer never came: a new one next time
            raise

    async def _run(self) -> None:
        while True:
            if self.embedded is not None and not self.embedded.running():
                await self._revive()
            with contextlib.suppress(event_errors.DatabaseUnavailable):
                await self.probe()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)

    async def _revive(self) -> None:
        assert self.embedded is not None
        self.failed(event_errors.DatabaseUnavailable("the embedded PostgreSQL is not running"))
        try:
            restarted = await asyncio.to_thread(self.embedded.revive)
        except embedded_db.EmbeddedError as exc:
            log.error("could not restart the embedded PostgreSQL (trying again): %s", exc)
            return
        if restarted:
            self.restarts += 1
            log.warning("restarted the embedded PostgreSQL in %s", self.embedded.pgdata)


WATCH = web.AppKey("database_watch", DatabaseWatch)
