"""Where the database is: an existing PostgreSQL server, or one embedded in the data directory.

``resolve_dsn`` finds the database (starting the embedded server when none is configured:
``hub.embedded_db``), ``migrate`` brings its schema up to date (and tells a database out of
reach as a ``DatabaseError``) and ``create_pool`` opens the connection pool that ``hub.app``
owns and closes.

A serving hub's pool bounds every wait on the database: borrowing a connection (and opening
one) and each statement. A wait that runs out is ``DatabaseUnavailable``, like a refused or
dropped connection, so a stalled or slow database answers 503 instead of holding requests.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import asyncpg
from asyncpg import pool as asyncpg_pool

from events import errors as event_errors
from hub import embedded_db
from hub import settings as hub_settings
from migrations import runner

SERVER_SETTINGS = {
    "timezone": "UTC",
    "application_name": "chronohub",
    # A session idle inside a transaction holds back every subscriber's fence.
    "idle_in_transaction_session_timeout": "60s",
}


class DatabaseError(Exception):
    """The database could not be started, reached or brought to the expected schema."""


def resolve_dsn(config: hub_settings.Settings) -> str | None:
    """The URL to connect to; ``None`` means asyncpg reads the PG* variables itself."""
    return locate(config).dsn


@dataclass(frozen=True)
class Located:
    """Where the database is: its URL, and the embedded server when the hub runs one."""

    dsn: str | None
    embedded: embedded_db.EmbeddedPostgres | None = None


def locate(config: hub_settings.Settings) -> Located:
    """The database to connect to, starting (or joining) the embedded one if none is configured:
    the hub supervises that one (``hub.database_watch``)."""
    if config.database_url or config.uses_pg_environment():
        return Located(config.database_url)
    server = embedded_db.EmbeddedPostgres(
        config.data_dir, listen=config.embedded_db_listen, port=config.embedded_db_port
    )
    try:
        return Located(server.start(), server)
    except embedded_db.EmbeddedError as exc:
        raise DatabaseError(f"the embedded PostgreSQL in {server.pgdata}: {exc}") from exc


async def keep_session(conn: asyncpg.Connection[Any]) -> None:
    """Release a connection to the pool without asyncpg's default reset query.

    The default sends ``RESET ALL; UNLISTEN *; ...`` on every release: one more round trip
    per append, which cost a third of single-event append throughput. chronohub leaves no
    session state on pooled connections: LISTEN has its own connection, advisory locks and
    ``plan_cache_mode`` are transaction-scoped (``SET LOCAL``), and the one session setting,
    the ``search_path`` of a rebuild, verify or ``state --at`` on its scratch schema, is reset
    by ``projections.rebuild.drop_scratch`` even when dropping the schema fails. asyncpg still
    rolls back any open transaction before calling this.
    """


async def _connect(*args: Any, **kwargs: Any) -> asyncpg.Connection[Any]:
    """The pool's new connections: a database out of reach (refused, its socket gone) is
    ``DatabaseUnavailable``, whoever borrowed from the pool, rather than an ``OSError`` that
    the error middleware could not tell from a handler's own."""
    try:
        conn: asyncpg.Connection[Any] = await asyncpg.connect(*args, **kwargs)
        return conn
    except TimeoutError as exc:  # an OSError too, with no words of its own
        raise event_errors.DatabaseUnavailable("could not connect in time") from exc
    except OSError as exc:
        raise event_errors.DatabaseUnavailable(f"{type(exc).__name__}: {exc}") from exc


class Connection(asyncpg.Connection):
    """A pool's connection whose statements that run out of time (``command_timeout``) are
    ``DatabaseUnavailable``: asyncpg raises a bare ``TimeoutError``, which the error middleware
    could not tell from another wait's (an HTTP call to a server, a spawn). Transactions'
    BEGIN and COMMIT go through ``execute`` too."""

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        with _timed_out():
            return await super().execute(*args, **kwargs)

    async def executemany(self, *args: Any, **kwargs: Any) -> Any:
        with _timed_out():
            return await super().executemany(*args, **kwargs)

    async def fetch(self, *args: Any, **kwargs: Any) -> Any:
        with _timed_out():
            return await super().fetch(*args, **kwargs)

    async def fetchval(self, *args: Any, **kwargs: Any) -> Any:
        with _timed_out():
            return await super().fetchval(*args, **kwargs)

    async def fetchrow(self, *args: Any, **kwargs: Any) -> Any:
        with _timed_out():
            return await super().fetchrow(*args, **kwargs)

    async def fetchmany(self, *args: Any, **kwargs: Any) -> Any:
        with _timed_out():
            return await super().fetchmany(*args, **kwargs)


@contextlib.contextmanager
def _timed_out() -> Generator[None]:
    try:
        yield
    except TimeoutError as exc:
        raise event_errors.DatabaseUnavailable(
            "a statement did not finish within the database's time limit (db_statement_timeout)"
        ) from exc


class Pool(asyncpg.Pool):
    """asyncpg's pool, borrowing with a default time limit (``acquire_timeout``): a borrow
    that runs out of time is ``DatabaseUnavailable`` (asyncpg's ``TimeoutError`` otherwise).

    The limit also bounds the release of a connection whose statement timed out (asyncpg
    waits for the server to acknowledge the cancel that long), so no request outlives it
    by more than the statement's own limit."""

    __slots__ = ("acquire_timeout",)
    acquire_timeout: float | None

    def acquire(self, *, timeout: float | None = None) -> Any:
        limit = self.acquire_timeout if timeout is None else timeout
        return _Borrow(super().acquire(timeout=limit), limit)


class _Borrow:
    """``pool.acquire()``'s context (and awaitable), its time running out translated."""

    def __init__(self, inner: asyncpg_pool.PoolAcquireContext, limit: float | None) -> None:
        self._inner = inner
        self._limit = limit

    async def __aenter__(self) -> Any:
        try:
            return await self._inner.__aenter__()
        except TimeoutError as exc:
            raise self._unavailable() from exc

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._inner.__aexit__(exc_type, exc, tb)
        except TimeoutError as timed_out:
            # Releasing a connection whose statement timed out waits (this long at most) for
            # the server to acknowledge the cancel; asyncpg has closed the connection.
            raise event_errors.DatabaseUnavailable(
                f"the database did not acknowledge a cancelled statement within {self._limit} s"
            ) from timed_out

    def __await__(self) -> Generator[Any, None, Any]:
        return self._awaited().__await__()

    async def _awaited(self) -> Any:
        try:
            return await self._inner
        except TimeoutError as exc:
            raise self._unavailable() from exc

    def _unavailable(self) -> event_errors.DatabaseUnavailable:
        return event_errors.DatabaseUnavailable(
            f"no database connection within {self._limit} s (db_acquire_timeout)"
        )


async def create_pool(
    dsn: str | None,
    *,
    min_size: int,
    max_size: int,
    acquire_timeout: float | None = None,
    statement_timeout: float | None = None,
) -> asyncpg.Pool[Any]:
    """A pool on ``dsn`` with chronohub's session settings; ``acquire_timeout`` bounds borrowing
    (and opening) a connection, ``statement_timeout`` each statement (None: no bound, for
    one-shot commands such as a rebuild)."""
    connect_kwargs: dict[str, Any] = {}
    if acquire_timeout is not None:
        connect_kwargs["timeout"] = acquire_timeout
    # Built as asyncpg.create_pool builds its pool (same defaults), but of the class above.
    pool = Pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        max_queries=50000,
        max_inactive_connection_lifetime=300.0,
        loop=None,
        connection_class=Connection,
        record_class=asyncpg.Record,
        server_settings=SERVER_SETTINGS,
        reset=keep_session,
        connect=_connect,
        command_timeout=statement_timeout,
        **connect_kwargs,
    )
    pool.acquire_timeout = acquire_timeout
    try:
        await pool
    except (OSError, asyncpg.PostgresError, event_errors.DatabaseUnavailable) as exc:
        raise DatabaseError(f"could not connect to PostgreSQL: {exc}") from exc
    return pool


# What asyncpg raises when it cannot reach a database or is not let in: a bad URL, no
# server answering, a refused login, no such database, a server still starting.
UNREACHABLE = (
    OSError,
    asyncpg.ClientConfigurationError,
    asyncpg.PostgresConnectionError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidCatalogNameError,
    asyncpg.CannotConnectNowError,
)


async def migrate(dsn: str | None, *, described: str | None = None) -> list[runner.Migration]:
    """Apply pending migrations on ``dsn`` (under the runner's advisory lock). It is the hub's
    first contact with its database, so one out of reach is told here as a ``DatabaseError``
    naming ``described`` (``Settings.describe_database()``: where it was looked for)."""
    try:
        conn = await asyncpg.connect(dsn, server_settings=SERVER_SETTINGS)
        try:
            return await runner.migrate(conn)
        finally:
            await conn.close()
    except UNREACHABLE as exc:
        where = f" ({described})" if described else ""
        raise DatabaseError(f"could not reach PostgreSQL{where}: {exc}") from exc
