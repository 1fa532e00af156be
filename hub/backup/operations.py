"""Take a backup of a hub, or restore one into an empty installation.

A backup is consistent without stopping the hub: the manifest's figures are read in the very
snapshot ``pg_dump`` dumps (``pg_export_snapshot``), and projects' git objects are copied
*after* the dump. Objects are only ever added (a push writes its objects before the
transaction that moves refs commits; ``chronohub projects gc`` removes only objects no ref
reaches), so every object a ref in the dump names is on disk when the copy starts.

What a backup holds, and what not (docs/operations.md, "Backup and restore"):

* the database: the event log, every read model (projects' refs among them), password hashes,
  token hashes, collaboration rooms, webhook and projection checkpoints;
* projects' repositories (``<data_dir>/projects/<id>.git``);
* not the cookie secret: a restored hub signs cookies with a new key, so browser sessions
  end (everyone signs in again) while API tokens, whose hashes are in the dump, keep working.
  A backup is often kept where the running hub's key should not be; with it, a stolen backup
  would let its holder forge anyone's session on the live hub;
* not the embedded database's password (the new cluster has its own), users' home
  directories (users' files, backed up as any file system is) nor servers' logs;
* not the read models' snapshots nor the scratch schemas of time travel, rebuild and verify
  (``SCRATCH_SCHEMAS``): derived from the log, and as large as many copies of the read models.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from events import sql
from hub import data_dir, database, version
from hub import settings as hub_settings
from hub.backup import archive, errors, pgtools
from migrations import runner
from projections import rebuild, snapshots

queries = sql.Queries(__package__ or "hub.backup", "backup.sql")

Stage = Callable[[str, int | None], archive.Tick]
"""Starts a step (a description, how many files or None) and returns its tick."""

NOT_INCLUDED = [
    "cookie_secret: a restored hub makes a new one, so browser sessions end; API tokens work",
    "db_password: the embedded PostgreSQL that restores this makes its own",
    "users/ and logs/: users' files and servers' output, backed up as any file system is",
    "snapshots of the read models (snapshot_* schemas): derived from the log, taken again",
]
SCRATCH_SCHEMAS = [
    f"{snapshots.PURPOSE}_[0-9a-f]{{16}}",
    f"{snapshots.BUILDING}_[0-9a-f]{{16}}",
    f"{rebuild.AS_OF}_[0-9a-f]{{16}}",
    "rebuild_*_[0-9a-f]{16}",
    "verify_*_[0-9a-f]{16}",
]
"""``pg_dump --exclude-schema`` patterns (``rebuild.scratch_name``): the read models'
snapshots and the scratch schemas of time travel, rebuild and verify. All are derived from
the log (a restore replays it), and copying them would make a backup as large as
``snapshot_keep`` copies of the read models."""
# Beyond this many transaction ids to hand out, a restore asks for pg_resetwal instead
# (consuming them costs about a second per hundred thousand).
MAX_XID_GAP = 50_000_000


def _ignore(description: str, total: int | None) -> archive.Tick:
    return lambda done: None


def projects_root(config: hub_settings.Settings) -> Path:
    """Where the hub keeps projects' repositories (hub/projects/storage.py)."""
    return config.data_dir / "projects"


async def _connect(dsn: str | None) -> asyncpg.Connection[Any]:
    try:
        conn: asyncpg.Connection[Any] = await asyncpg.connect(
            dsn, server_settings=database.SERVER_SETTINGS
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise database.DatabaseError(f"could not connect to PostgreSQL: {exc}") from exc
    return conn


async def _summary(conn: asyncpg.Connection[Any]) -> archive.LogSummary:
    row = await conn.fetchrow(queries["log_summary"])
    assert row is not None
    last = f"{row['tx']}:{row['position']}" if row["tx"] is not None else None
    return archive.LogSummary(count=row["events"], last_id=last, last_event_id=row["event_id"])


async def take(
    config: hub_settings.Settings,
    target: Path,
    *,
    pg_bin: Path | None = None,
    stage: Stage = _ignore,
) -> archive.Manifest:
    """Back the hub up into ``target`` (a new or empty directory); return the manifest."""
    pg_dump = pgtools.binary("pg_dump", pg_bin)
    await asyncio.to_thread(archive.prepare_target, target)
    dsn = await asyncio.to_thread(database.resolve_dsn, config)
    conn = await _connect(dsn)
    try:
        await runner.check_current(conn)
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            snapshot = await conn.fetchval(queries["export_snapshot"])
            schema = await conn.fetchval(queries["schema_version"])
            summary = await _summary(conn)
            args, env = pgtools.connection(dsn)
            tick = stage("dump the database", None)
            dump = target / archive.DUMP
            await pgtools.run(
                [pg_dump, "--format=custom", "--no-owner", "--no-privileges",
                 f"--snapshot={snapshot}", f"--file={dump}",
                 *(f"--exclude-schema={pattern}" for pattern in SCRATCH_SCHEMAS), *args],
                env,
                what="dump the database",
            )  # fmt: skip
            tick(1)
    finally:
        await conn.close()
    await asyncio.to_thread(dump.chmod, 0o600)
    files = {archive.DUMP: await asyncio.to_thread(archive.sha256, dump)}
    # After the dump, never before: see the module's docstring.
    source = projects_root(config)
    repository_files = await asyncio.to_thread(lambda: list(archive.repository_files(source)))
    tick = stage("copy projects' git objects", len(repository_files))
    files |= await asyncio.to_thread(
        archive.copy_tree, repository_files, source, target / archive.PROJECTS, tick
    )
    manifest = archive.Manifest(
        format=archive.FORMAT,
        chronohub_version=version.CHRONOHUB,
        schema_version=schema,
        created_at=datetime.now(UTC),
        database=config.describe_database(),
        events=summary,
        files=files,
        not_included=NOT_INCLUDED,
    )
    await asyncio.to_thread(archive.write_manifest, target, manifest)
    return manifest


async def restore(
    config: hub_settings.Settings,
    source: Path,
    *,
    pg_bin: Path | None = None,
    stage: Stage = _ignore,
) -> archive.Manifest:
    """Restore the backup in ``source`` into this (empty) installation: checksums first, then
    the database, then projects' repositories. The caller then migrates (a backup of an older
    schema is upgraded as any database is) and verifies the projections."""
    pg_restore = pgtools.binary("pg_restore", pg_bin)
    manifest = await asyncio.to_thread(archive.read_manifest, source)
    known = runner.latest_version()
    if manifest.schema_version > known:
        raise errors.BackupError(
            f"the backup's schema is at version {manifest.schema_version}, newer than this"
            f" chronohub knows (up to {known}; the backup was made by chronohub"
            f" {manifest.chronohub_version}): restore it with that version or a newer one"
        )
    tick = stage("verify checksums", len(manifest.files))
    await asyncio.to_thread(archive.verify, source, manifest, tick)
    projects = projects_root(config)
    present = await asyncio.to_thread(lambda: list(archive.repository_files(projects))[:1])
    if present:
        raise errors.BackupError(
            f"{projects} already holds projects' repositories: restore only into a new"
            " installation (an empty database and data directory)"
        )
    dsn = await asyncio.to_thread(database.resolve_dsn, config)
    conn = await _connect(dsn)
    try:
        gap = await _transaction_id_gap(conn, manifest)
        tables = [row["name"] for row in await conn.fetch(queries["user_relations"])]
        if tables:
            raise errors.BackupError(
                f"the database ({config.describe_database()}) is not empty (it has"
                f" {', '.join(tables)}…): restore only into a new installation, with an empty"
                " database"
            )
        args, env = pgtools.connection(dsn)
        tick = stage("restore the database", None)
        await pgtools.run(
            [pg_restore, "--no-owner", "--no-privileges", "--exit-on-error",
             "--single-transaction", *args, str(source / archive.DUMP)],
            env,
            what="restore the database",
        )  # fmt: skip
        tick(1)
        await _catch_up_transaction_ids(conn, gap, stage)
        restored = await _summary(conn)
    finally:
        await conn.close()
    if restored != manifest.events:
        raise errors.BackupError(
            f"the restored event log ({restored.count} events, last {restored.last_id}) is not"
            f" the one the manifest records ({manifest.events.count}, last"
            f" {manifest.events.last_id})"
        )
    await asyncio.to_thread(_prepare_data_dir, config)
    names = [name for name in manifest.files if name.startswith(f"{archive.PROJECTS}/")]
    tick = stage("copy projects' git objects", len(names))
    await asyncio.to_thread(archive.restore_projects, source, manifest, projects, tick)
    return manifest


def _prepare_data_dir(config: hub_settings.Settings) -> None:
    # The embedded PostgreSQL made (or checked) it as it started; an external one did not.
    if config.database_url or config.uses_pg_environment():
        data_dir.prepare(config.data_dir)


async def _transaction_id_gap(conn: asyncpg.Connection[Any], manifest: archive.Manifest) -> int:
    """How far this cluster's transaction counter is behind the backup's newest event; refused
    (before anything is written) when too far to catch up by spending ids."""
    if manifest.events.last_id is None:
        return 0
    newest = int(manifest.events.last_id.split(":", 1)[0])
    gap: int = await conn.fetchval(queries["xid_gap"], newest)
    if gap > MAX_XID_GAP:
        raise errors.BackupError(
            f"this PostgreSQL's transaction counter is {gap:,} behind the backup's newest event:"
            f" stop the server and advance it past {newest} with pg_resetwal"
            " --next-transaction-id (and --epoch), start it, then restore"
        )
    return gap


async def _catch_up_transaction_ids(conn: asyncpg.Connection[Any], gap: int, stage: Stage) -> None:
    """Move the cluster's transaction counter past the newest restored event's.

    Events keep the id of the transaction that wrote them (``tx_id``), and readers see only
    events older than every transaction still running (ARCHITECTURE.md, "gap-free reading").
    A new cluster's counter starts low: until it passes the restored ids, readers would see
    none of the restored log, and new events would sort before old ones. So the restore
    spends ids (empty committed transactions) until the counter is past them.
    """
    if gap == 0:
        return
    tick = stage(f"advance the transaction counter by {gap:,}", None)
    await conn.fetchval(queries["set_xids_to_consume"], gap)
    await conn.execute(queries["consume_xids"])
    tick(1)
