"""Where the database is: an existing PostgreSQL server, or one embedded in the data directory.

``resolve_dsn`` finds the database (starting the embedded server when none is configured:
``hub.embedded_db``), ``migrate`` brings its schema up to date (``hub.app.migrate`` tells a
database out of reach as a ``DatabaseError``) and ``create_pool`` opens the connection pool
that ``hub.app`` owns and closes.
"""

from __future__ import annotations

from typing import Any

import asyncpg

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


def start_embedded(config: hub_settings.Settings) -> str:
    """Start (or join) the embedded PostgreSQL in ``<data_dir>/postgres``; its URL."""
    server = embedded_db.EmbeddedPostgres(
        config.data_dir, listen=config.embedded_db_listen, port=config.embedded_db_port
    )
    try:
        return server.start()
    except embedded_db.EmbeddedError as exc:
        raise DatabaseError(f"the embedded PostgreSQL in {server.pgdata}: {exc}") from exc


def resolve_dsn(config: hub_settings.Settings) -> str | None:
    """The URL to connect to; ``None`` means asyncpg reads the PG* variables itself."""
    if config.database_url or config.uses_pg_environment():
        return config.database_url
    return start_embedded(config)


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
    except OSError as exc:
        raise event_errors.DatabaseUnavailable(f"{type(exc).__name__}: {exc}") from exc


async def create_pool(dsn: str | None, *, min_size: int, max_size: int) -> asyncpg.Pool[Any]:
    """A pool on ``dsn`` with chronohub's session settings."""
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            server_settings=SERVER_SETTINGS,
            reset=keep_session,
            connect=_connect,
        )
    except (OSError, asyncpg.PostgresError, event_errors.DatabaseUnavailable) as exc:
        raise DatabaseError(f"could not connect to PostgreSQL: {exc}") from exc
    assert pool is not None
    return pool


async def migrate(dsn: str | None) -> list[runner.Migration]:
    """Apply pending migrations on ``dsn`` (under the runner's advisory lock)."""
    conn = await asyncpg.connect(dsn, server_settings=SERVER_SETTINGS)
    try:
        return await runner.migrate(conn)
    finally:
        await conn.close()
