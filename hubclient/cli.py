"""``chronohub project …`` and ``chronohub login``: the client's command line.

Exit status: 0 done; 1 a conflict needs a pick, or a push needs a pull first; 2 usage;
3 authentication or access (no token, a revoked one, read-only, the project gone);
4 the hub or a remote cannot be reached; 5 another failure (see ``hubclient.errors``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Literal

from hubclient import errors, output
from hubclient.commands import Context, inspect, login, publish, receive

# merge.Pick's values, written out: importing the merge (nbdime) would slow every command
PICKS = ("ours", "theirs")


def names(text: str) -> list[str]:
    """``a,b,c`` as a list of names (``--to``/``--team``)."""
    found = [part.strip() for part in text.split(",") if part.strip()]
    if not found:
        raise argparse.ArgumentTypeError(f"no names in {text!r}")
    return found


def pick_file(text: str) -> tuple[str, Literal["ours", "theirs"]]:
    """``PATH=ours|theirs`` (``--pick-file``)."""
    path, sep, side = text.rpartition("=")
    if not sep or not path:
        raise argparse.ArgumentTypeError(f"expected PATH=ours or PATH=theirs, got {text!r}")
    if side not in PICKS:
        raise argparse.ArgumentTypeError(
            f"{side!r} is not a side: PATH=ours or PATH=theirs (in {text!r})"
        )
    return path, side  # type: ignore[return-value]


def positive(text: str) -> int:
    """A count of 1 or more."""
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return int(text)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hub", metavar="URL", help="the hub (default: see 'Finding the hub')")
    parser.add_argument("--token", metavar="TOKEN", help="an API token for the hub")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def parser() -> argparse.ArgumentParser:
    """The parser of ``chronohub project …`` and ``chronohub login``."""
    top = argparse.ArgumentParser(prog="chronohub", description=__doc__)
    groups = top.add_subparsers(dest="group", required=True, metavar="COMMAND")

    signin = groups.add_parser("login", help="log in to a hub and save a token for the client")
    signin.add_argument("url", help="the hub's URL, e.g. https://hub.example.org")
    signin.add_argument("--user", help="your user name (asked when not given)")
    signin.add_argument("--json", action="store_true", help="print the result as JSON")
    signin.set_defaults(run=lambda ctx, a: login.login(ctx, a.url, a.user))

    project = groups.add_parser("project", help="push, check out, pull and share projects")
    commands = project.add_subparsers(dest="command", required=True, metavar="ACTION")

    init = commands.add_parser("init", help="make a folder a new hub project <you>/<folder>")
    init.add_argument("dir", nargs="?", help="the folder (default: the current one)")
    init.add_argument("--name", help="the project's name, NAME or OWNER/NAME")
    init.set_defaults(run=lambda ctx, a: publish.init(ctx, a.dir, a.name))

    push = commands.add_parser("push", help="commit the folder's changes and push them")
    push.add_argument("dir", nargs="?", help="the folder (default: the current one)")
    push.add_argument("--to", type=names, action="append", default=[], metavar="USER,…")
    push.add_argument("--team", type=names, action="append", default=[], metavar="GROUP,…")
    push.add_argument("--write", action="store_true", help="share with write access")
    push.add_argument("-m", "--message", help="the commit message")
    push.add_argument("--name", help="the project's name on the first push (NAME or OWNER/NAME)")
    push.add_argument(
        "--strip-outputs", action="store_true", help="remove notebooks' outputs before pushing"
    )
    push.set_defaults(
        run=lambda ctx, a: publish.push(
            ctx,
            a.dir,
            to=_flat(a.to),
            teams=_flat(a.team),
            write=a.write,
            message=a.message,
            name=a.name,
            strip_outputs=a.strip_outputs,
        )
    )

    checkout = commands.add_parser("checkout", help="clone a project or any git URL")
    checkout.add_argument("source", help="OWNER/NAME of a hub project, or a git URL")
    checkout.add_argument("dir", nargs="?", help="where (default: ~/projects/<name>)")
    checkout.set_defaults(run=lambda ctx, a: receive.checkout(ctx, a.source, a.dir))

    pull = commands.add_parser("pull", help="fetch and merge the project's changes")
    pull.add_argument("dir", nargs="?", help="the checkout (default: the current folder)")
    pull.add_argument("--pick", choices=PICKS, help="the side that wins every conflict")
    pull.add_argument(
        "--pick-file",
        type=pick_file,
        action="append",
        default=[],
        metavar="PATH=ours|theirs",
        help="the side that wins one file's conflicts (repeatable)",
    )
    pull.set_defaults(
        run=lambda ctx, a: receive.pull(ctx, a.dir, pick=a.pick, pick_files=dict(a.pick_file))
    )

    status = commands.add_parser("status", help="ahead/behind, local changes, last push")
    status.add_argument("dir", nargs="?", help="the checkout (default: the current folder)")
    status.add_argument("--offline", action="store_true", help="do not fetch first")
    status.set_defaults(run=lambda ctx, a: inspect.status(ctx, a.dir, offline=a.offline))

    log = commands.add_parser("log", help="the checkout's history, newest first")
    log.add_argument("dir", nargs="?", help="the checkout (default: the current folder)")
    log.add_argument("-n", type=positive, default=20, help="how many commits (default 20)")
    log.set_defaults(run=lambda ctx, a: inspect.log(ctx, a.dir, count=a.n))

    listing = commands.add_parser("list", help="the projects you can read")
    listing.add_argument("--shared", action="store_true", help="only those shared with you")
    listing.add_argument("--team", type=names, action="append", default=[], metavar="GROUP,…")
    listing.set_defaults(
        run=lambda ctx, a: inspect.list_projects(ctx, shared=a.shared, teams=_flat(a.team))
    )

    share = commands.add_parser("share", help="give users or teams access to a project")
    share.add_argument("project", help="OWNER/NAME")
    share.add_argument("--to", type=names, action="append", default=[], metavar="USER,…")
    share.add_argument("--team", type=names, action="append", default=[], metavar="GROUP,…")
    share.add_argument("--write", action="store_true", help="write access (default: read)")
    share.add_argument("--revoke", action="store_true", help="take their access back")
    share.set_defaults(
        run=lambda ctx, a: publish.share(
            ctx, a.project, to=_flat(a.to), teams=_flat(a.team), write=a.write, revoke=a.revoke
        )
    )
    for sub in (init, push, checkout, pull, status, log, listing, share):
        _common(sub)
    return top


def _flat(lists: list[list[str]]) -> list[str]:
    return list(dict.fromkeys(name for group in lists for name in group))


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``chronohub project …`` or ``chronohub login …``: the exit status."""
    args = parser().parse_args(argv)
    out = output.Output(as_json=args.json)
    ctx = Context(out, getattr(args, "hub", None), getattr(args, "token", None))
    try:
        status: int = args.run(ctx, args)
    except errors.ClientError as exc:
        out.say(f"error: {exc.message}")
        if args.json:
            out.result({"error": exc.message, "exit": exc.code})
        return exc.code
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
