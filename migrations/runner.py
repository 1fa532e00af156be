"""Apply the numbered ``NNNN_name.sql`` files of this package, forward only, under an advisory lock.

Two processes starting together both call ``migrate``; the lock makes the second wait and then
find nothing left to do, so each migration is applied exactly once.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import asyncpg

# pg_advisory_lock key for migrations: any constant that nothing else uses ("chrm").
LOCK_KEY = 0x6368726D
FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
)"""
APPLIED = "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
RECORD = "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)"
LEDGER_EXISTS = "SELECT to_regclass('schema_migrations') IS NOT NULL"


class MigrationError(Exception):
    """The database schema cannot be brought to, or is not at, what this chronohub expects."""


class SchemaTooNew(MigrationError):
    """The database was migrated by a newer chronohub than this one."""


@dataclass(frozen=True)
class Migration:
    """One SQL file: its number, name, text and checksum."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file, to notice a migration edited after it was applied."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available() -> list[Migration]:
    """Every migration file shipped with this package, in order."""
    found = []
    for entry in resources.files(__package__).iterdir():
        match = FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration numbers must run 1, 2, 3… without gaps, found {versions}")
    return found


def latest_version() -> int:
    """The schema version this chronohub expects."""
    return len(available())


async def migrate(conn: asyncpg.Connection[Any], *, target: int | None = None) -> list[Migration]:
    """Apply every migration the database lacks (up to version ``target`` only, when given:
    the upgrade test makes an earlier release's schema so); return those applied now."""
    known = available()
    if target is not None and not 0 <= target <= len(known):
        raise MigrationError(f"no schema version {target}: this chronohub knows 0 to {len(known)}")
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    try:
        await conn.execute(CREATE_LEDGER)
        applied = await _check_applied(conn, known)
        pending = known[len(applied) : target]
        for migration in pending:
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(RECORD, migration.version, migration.name, migration.checksum)
        return pending
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)


async def check_current(conn: asyncpg.Connection[Any]) -> None:
    """Refuse (``MigrationError``) unless the database is at exactly the schema we know."""
    known = available()
    if not await conn.fetchval(LEDGER_EXISTS):
        raise MigrationError("the database has no chronohub schema: run `chronohub migrate`")
    applied = await _check_applied(conn, known)
    if len(applied) < len(known):
        raise MigrationError(
            f"the database schema is at version {len(applied)}, this chronohub needs"
            f" {len(known)}: run `chronohub migrate`"
        )


async def _check_applied(conn: asyncpg.Connection[Any], known: list[Migration]) -> list[int]:
    rows = await conn.fetch(APPLIED)
    newest = rows[-1]["version"] if rows else 0
    if newest > len(known):
        raise SchemaTooNew(
            f"the database schema is at version {newest}, newer than this chronohub knows"
            f" (up to {len(known)}); run a chronohub at least as new as the one that migrated it"
        )
    for row in rows:
        migration = known[row["version"] - 1]
        if row["checksum"] != migration.checksum:
            raise MigrationError(
                f"migration {row['version']:04d}_{row['name']} was changed after it was applied;"
                " migrations are forward-only: add a new one instead"
            )
    return [row["version"] for row in rows]
