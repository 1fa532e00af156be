"""The ``chronohub`` command: serve, migrate, token, password, projections, events, state,
projects."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import pydantic
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from hub import app, bootstrap, data_dir, database, errors, processes, startup
from hub import settings as hub_settings
from hub.backup import errors as backup_errors
from hub.backup import operations as backup
from hub.cli import backup as backup_cli
from hub.cli import entry, progress
from hub.cli import events as events_cli
from hub.cli import password as password_cli
from hub.cli import projects as projects_cli
from hub.cli import users as users_cli
from hub.projects import gc
from migrations import runner as migrations
from projections import base, catalog, rebuild

console = Console(stderr=True)


def main(argv: Sequence[str] | None = None) -> int:
    """The hub's own ``chronohub`` commands (hub/cli/entry.py hands the client's over)."""
    words = sys.argv[1:] if argv is None else list(argv)
    if words[:1] and words[0] in entry.CLIENT_COMMANDS:
        return entry.main(words)
    args = _parser().parse_args(words)
    try:
        config = hub_settings.load(**_overrides(args))
    except pydantic.ValidationError as exc:
        for problem in exc.errors():
            where = ".".join(str(part) for part in problem["loc"])
            message = problem["msg"].removeprefix("Value error, ")
            _fail(f"{where}: {message}" if where else message, "invalid configuration")
        return 2
    logging.basicConfig(
        level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # asyncpg's pool logs each failed attempt to reopen its minimum of connections, with a
    # traceback, every second of a database outage; the hub logs the outage once itself
    # (hub.database_watch).
    logging.getLogger("asyncpg.pool").setLevel(max(logging.ERROR, logging.root.level))
    try:
        result: int = _run(args.command(config, args))
    except (startup.StartupError, database.DatabaseError, data_dir.DataDirError) as exc:
        # Where chronohub runs is the problem (a busy port, an unwritable data directory, a
        # database out of reach), not what it was asked: the status of a usage error.
        return _fail(str(exc), code=2)
    except (
        migrations.MigrationError,
        base.ProjectionError,
        bootstrap.ConfigurationError,
        backup_errors.BackupError,
    ) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    return result


def _fail(message: str, label: str = "error", *, code: int = 1) -> int:
    """Print ``label: message`` as one line on stderr (its lines joined, never wrapped to the
    terminal, brackets kept as they are); return ``code``."""
    line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    console.print(Text.assemble((f"{label}:", "red"), " ", line), soft_wrap=True)
    return code


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
    serve.add_argument("--ip", help="the public address: where the proxy listens")
    serve.add_argument("--port", type=int, help="the public port: the proxy's (0: a free one)")
    serve.add_argument("--hub-ip", help="the hub's internal address")
    serve.add_argument("--hub-port", type=int, help="the hub's internal port (0: a free one)")
    serve.set_defaults(command=_serve)

    migrate = commands.add_parser("migrate", help="apply pending database migrations")
    migrate.set_defaults(command=_migrate)

    token = commands.add_parser("token", help="issue an API token for a user and print it")
    token.add_argument("user", help="the user the token belongs to")
    token.add_argument("--note", default="from the command line", help="what the token is for")
    token.add_argument(
        "--expires-in",
        type=token_lifetime,
        default=None,
        help="lifetime in seconds (up to a century)",
    )
    token.add_argument(
        "--scope", action="append", dest="scopes", default=None, help="a scope (repeatable)"
    )
    token.set_defaults(command=_token)

    password = commands.add_parser(
        "password", help="set a user's password (asked on the terminal, or one line of stdin)"
    )
    password.add_argument("user", help="the user (created if there is none yet)")
    password.set_defaults(command=_password)

    projections = commands.add_parser("projections", help="rebuild or verify read models")
    actions = projections.add_subparsers(required=True, metavar="ACTION")
    rebuild_cmd = actions.add_parser("rebuild", help="replay the log into fresh tables and swap")
    rebuild_cmd.add_argument("name", nargs="?", help="one projection (default: all)")
    rebuild_cmd.set_defaults(command=_rebuild)
    verify_cmd = actions.add_parser("verify", help="rebuild aside and compare with live tables")
    verify_cmd.add_argument("name", nargs="?", help="one projection (default: all)")
    verify_cmd.set_defaults(command=_verify)
    snapshot_cmd = actions.add_parser(
        "snapshot",
        help="copy every read model as of a point, so that 'state --at' replays only the rest",
    )
    snapshot_cmd.add_argument(
        "--at",
        type=events_cli.at_argument,
        metavar="POSITION|TIMESTAMP",
        help="the point (default: the log's end); at most snapshot_keep are kept",
    )
    snapshot_cmd.add_argument(
        "--list", action="store_true", help="list the snapshots instead of taking one"
    )
    # A serving hub's child: ends with the hub that started it (never typed by hand).
    snapshot_cmd.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    snapshot_cmd.set_defaults(command=_snapshot)

    log = commands.add_parser("events", help="read, follow, export, import or count the event log")
    log_actions = log.add_subparsers(required=True, metavar="ACTION")
    tail = log_actions.add_parser("tail", help="the last events, oldest first")
    tail.add_argument("-n", type=events_cli.positive_int, default=20, help="how many (default 20)")
    _event_filters(tail)
    tail.set_defaults(command=_events_tail)
    follow = log_actions.add_parser("follow", help="print events as they happen, until Ctrl-C")
    _event_filters(follow)
    follow.add_argument(
        "--after",
        type=events_cli.checkpoint_argument,
        metavar="TX:POS",
        help="start after this event id instead of at the head",
    )
    follow.add_argument("--json", action="store_true", help="one JSON object per line")
    follow.set_defaults(command=_events_follow)
    export = log_actions.add_parser("export", help="write the log as JSON Lines")
    export.add_argument(
        "-o", "--output", default="-", metavar="FILE", help="a file, or - for stdout (default)"
    )
    export.add_argument(
        "--after",
        type=events_cli.checkpoint_argument,
        metavar="TX:POS",
        help="resume after the event with this id (the last line exported)",
    )
    export.set_defaults(command=_events_export)
    import_cmd = log_actions.add_parser(
        "import", help="load an export into an empty log, then rebuild the projections"
    )
    import_cmd.add_argument("file", type=Path, help="a file written by 'events export'")
    import_cmd.set_defaults(command=_events_import)
    stats = log_actions.add_parser("stats", help="counts of events by type and by day (UTC)")
    stats.add_argument("--by", choices=("day", "type"), help="only one of the two tables")
    stats.set_defaults(command=_events_stats)

    state = commands.add_parser(
        "state", help="users, groups, tokens, servers or projects as they were at a point"
    )
    state.add_argument(
        "--at",
        required=True,
        type=events_cli.at_argument,
        metavar="POSITION|TIMESTAMP",
        help="a global position, or an ISO 8601 time with a zone (e.g. 2025-01-31T12:00:00Z)",
    )
    state.add_argument(
        "view",
        nargs="?",
        choices=events_cli.STATE_VIEWS,
        default="users",
        metavar="|".join(events_cli.STATE_VIEWS),
        help="what to show (default users)",
    )
    state.add_argument(
        "--limit", type=events_cli.positive_int, default=1000, help="most rows shown (default 1000)"
    )
    state.set_defaults(command=_state)

    backup_cli.add_commands(commands)
    commands.choices["backup"].set_defaults(command=_backup)
    commands.choices["restore"].set_defaults(command=_restore)

    # Handed over to hubclient by hub/cli/entry.py before this parser runs; listed for --help.
    commands.add_parser("project", help="the projects client: push, checkout, pull, share …")
    commands.add_parser("login", help="sign in to a hub and keep a token for 'chronohub project'")

    projects = commands.add_parser("projects", help="look after projects' repositories")
    project_actions = projects.add_subparsers(required=True, metavar="ACTION")
    gc_cmd = project_actions.add_parser(
        "gc", help="remove objects no ref reaches (packs of refused or cut-short pushes)"
    )
    gc_cmd.add_argument(
        "--grace",
        type=events_cli.positive_int,
        default=gc.GRACE_S,
        metavar="SECONDS",
        help="keep objects younger than this, and those refs reached within it (default 2 weeks)",
    )
    gc_cmd.add_argument("--dry-run", action="store_true", help="say what would go; remove nothing")
    gc_cmd.set_defaults(command=_projects_gc)
    return parser


def _event_filters(parser: argparse.ArgumentParser) -> None:
    for flag, dest, metavar, help_text in (
        ("--type", "types", "TYPE", "an event type, e.g. user.created (repeatable)"),
        ("--type-prefix", "type_prefixes", "PREFIX", "a type prefix, e.g. user. (repeatable)"),
        ("--stream", "streams", "STREAM", "a stream id (repeatable)"),
        ("--user", "users", "USER", "events about this user (repeatable)"),
        ("--group", "groups", "GROUP", "events about this group or its members (repeatable)"),
    ):
        parser.add_argument(flag, action="append", dest=dest, metavar=metavar, help=help_text)
    parser.add_argument("--actor", help="who caused them, e.g. user:alice or system:chronohub")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        key: value
        for key in ("ip", "port", "hub_ip", "hub_port")
        if (value := getattr(args, key, None)) is not None
    }


async def _serve(config: hub_settings.Settings, args: argparse.Namespace) -> int:
    await app.serve(config)
    return 0


async def _migrate(config: hub_settings.Settings, args: argparse.Namespace) -> int:
    dsn = await asyncio.to_thread(database.resolve_dsn, config)
    applied = await database.migrate(dsn, described=config.describe_database())
    for migration in applied:
        console.print(f"applied {migration.version:04d}_{migration.name}")
    console.print(f"schema at version {migrations.latest_version()} ({config.describe_database()})")
    return 0


def token_lifetime(text: str) -> int:
    """A token lifetime in seconds: from 1 up to ``hub_settings.MAX_LIFETIME_S``."""
    try:
        seconds = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from exc
    if not 1 <= seconds <= hub_settings.MAX_LIFETIME_S:
        raise argparse.ArgumentTypeError(
            f"must be between 1 and {hub_settings.MAX_LIFETIME_S} seconds, got {seconds}"
        )
    return seconds


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


async def _password(config: hub_settings.Settings, args: argparse.Namespace) -> int:
    try:
        secret = password_cli.read_password()
        async with app.open_hub(config, serving=False) as hub:
            created, first_admin = await password_cli.set_password(
                hub.store, config, args.user, secret
            )
    except errors.HubError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        return 1
    console.print(f"{'created user ' + args.user + ' and ' if created else ''}set the password")
    if first_admin:
        console.print(f"{args.user} is an admin: the hub had none")
    return 0


def _chosen(name: str | None) -> list[base.Projection]:
    return [base.by_name(catalog.ALL, name)] if name else list(catalog.ALL)


async def _rebuild(config: hub_settings.Settings, args: argparse.Namespace) -> int:
    async with app.open_hub(config, serving=False) as hub:
        for projection in _chosen(args.name):
            with progress.bar(console) as bar:
                result = await rebuild.rebuild(
                    hub.store,
                    projection,
                    progress=progress.reporter(bar, f"rebuild {projection.name}"),
                )
            console.print(f"rebuilt {result.projection}: {result.events} events")
    return 0


async def _snapshot(config: hub_settings.Settings, args: argparse.Namespace) -> int:
    if args.parent_pid is not None:
        try:
            processes.die_with_parent(args.parent_pid)
        except processes.ParentGone as exc:
            console.print(f"[red]error:[/red] {escape(str(exc))}")
            return 1
    async with app.open_hub(config, serving=False) as hub:
        if args.list:
            return await events_cli.list_snapshots(hub.store)
        return await events_cli.snapshot(hub.store, args.at, keep=config.snapshot_keep)


async def _verify(config: hub_settings.Settings, args: argparse.Namespace) -> int:
    return await _verify_projections(config, _chosen(args.name))


async def _verify_projections(
    config: hub_settings.Settings, chosen: Sequence[base.Projection]
) -> int:
    failed = False
    async with app.open_hub(config, serving=False) as hub:
        for projection in chosen:
            with progress.bar(console) as bar:
                result = await rebuild.verify(
                    hub.store,
                    projection,
                    progress=progress.reporter(bar, f"verify {projection.name}"),
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


async def _backup(config: hub_settings.Settings, args: argparse.Namespace) -> int:
    with backup_cli.stages(console) as stage:
        manifest = await backup.take(config, args.directory, pg_bin=args.pg_bin, stage=stage)
    console.print(
        f"[green]backed up[/green] into {args.directory}: {backup_cli.describe(manifest)}"
    )
    console.print(
        "not in the backup: the cookie secret (a restored hub signs everyone out of the browser;"
        " API tokens keep working) and users' home directories"
    )
    return 0


async def _restore(config: hub_settings.Settings, args: argparse.Namespace) -> int:
    with backup_cli.stages(console) as stage:
        manifest = await backup.restore(config, args.directory, pg_bin=args.pg_bin, stage=stage)
    console.print(f"[green]restored[/green] {backup_cli.describe(manifest)}")
    # open_hub migrates first: a backup of an older schema is upgraded here, as at start-up.
    return await _verify_projections(config, catalog.ALL)


async def _events_tail(config: hub_settings.Settings, args: argparse.Namespace) -> int:
    async with app.open_hub(config, serving=False) as hub:
        return await events_cli.tail(hub.store, events_cli.filters(args, limit=args.n))


async def _events_follow(config: hub_settings.Settings, args: argparse.Namespace) -> int:
    async with app.open_hub(config, serving=False) as hub:
        query = events_cli.filters(args)
        return await events_cli.follow(hub.store, query, after=args.after, as_json=args.json)


async def _events_export(config: hub_settings.Settings, args: argparse.Namespace) -> int:
    target = None if args.output == "-" else Path(args.output)
    async with app.open_hub(config, serving=False) as hub:
        return await events_cli.export(hub.store, target, after=args.after)


async def _events_import(config: hub_settings.Settings, args: argparse.Namespace) -> int:
    async with app.open_hub(config, serving=False) as hub:
        return await events_cli.import_file(hub.store, args.file)


async def _events_stats(config: hub_settings.Settings, args: argparse.Namespace) -> int:
    async with app.open_hub(config, serving=False) as hub:
        return await events_cli.stats(hub.store, args.by)


async def _state(config: hub_settings.Settings, args: argparse.Namespace) -> int:
    async with app.open_hub(config, serving=False) as hub:
        return await events_cli.state(hub.store, args.at, args.view, limit=args.limit)


async def _projects_gc(config: hub_settings.Settings, args: argparse.Namespace) -> int:
    async with app.open_hub(config, serving=False) as hub:
        return await projects_cli.collect(
            hub.store, config, grace_s=args.grace, dry_run=args.dry_run
        )


if __name__ == "__main__":
    sys.exit(main())
