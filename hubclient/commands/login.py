"""``chronohub login URL``: ask for a name and password, get a token, save it (mode 0600)."""

from __future__ import annotations

import getpass
import socket
import sys

from hubclient import api, config, errors
from hubclient.commands import Context


def login(ctx: Context, url: str, user: str | None) -> int:
    """Log in to the hub at ``url`` and save a token for the client."""
    base = config.normalize(url)
    name = user or ctx.environ.get("CHRONOHUB_USER")
    if not name:
        if not sys.stdin.isatty():
            raise errors.Usage("no user name: give --user NAME (standard input is no terminal)")
        name = input(f"user name on {base}: ").strip()
    if not name:
        raise errors.Usage("no user name given")
    if "CHRONOHUB_PASSWORD" in ctx.environ:  # for scripts and tests; a terminal is asked
        password = ctx.environ["CHRONOHUB_PASSWORD"]
    elif sys.stdin.isatty():
        password = getpass.getpass(f"password of {name}: ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    note = f"chronohub CLI on {socket.gethostname()}"
    token = api.login(base, name, password, note)
    path = config.save(ctx.environ, config.Saved(hub=base, user=name, token=token))
    ctx.out.say(f"logged in to {base} as {name}; token saved in {path}")
    ctx.out.result({"hub": base, "user": name, "credentials": str(path)})
    return 0
