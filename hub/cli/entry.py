"""The ``chronohub`` command's entry point.

The projects client (``chronohub project …``, ``chronohub login``) is handed over to
``hubclient`` before anything of the hub is imported: it runs in users' servers and on
laptops, needs no hub configuration, and starts in a fraction of a second instead of the
seconds that importing the hub (aiohttp, the API, the projections) takes. Every other command
goes to ``hub.cli.main``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

CLIENT_COMMANDS = ("project", "login")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``chronohub`` with ``argv`` (default: the process's arguments)."""
    words = sys.argv[1:] if argv is None else list(argv)
    if words[:1] and words[0] in CLIENT_COMMANDS:
        from hubclient import cli as client

        return client.main(words)
    from hub.cli import main as hub_main

    return hub_main.main(words)
