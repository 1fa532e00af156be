"""What the client prints: plain lines (on stderr, so stdout stays clean for ``--json``), one
JSON object on stdout with ``--json``, and rich progress bars for transfers, on a terminal.

rich is imported only when a bar is shown, so a command such as ``status`` starts fast.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from hubclient import git


@dataclass
class Output:
    """The command's voice: ``say`` for people, ``result`` for tools."""

    as_json: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)

    def say(self, message: str) -> None:
        """A line for the person (stderr; shown with ``--json`` too, tools ignore it)."""
        print(message, file=self.err, flush=True)

    def result(self, data: dict[str, Any], text: str | None = None) -> None:
        """The command's result: ``data`` as JSON with ``--json``, else ``text`` (if any)."""
        if self.as_json:
            print(json.dumps(data, indent=2, sort_keys=True), file=self.out, flush=True)
        elif text is not None:
            print(text, file=self.out, flush=True)

    @contextlib.contextmanager
    def progress(self, what: str) -> Iterator[git.Progress | None]:
        """A reporter for git's progress (a rich bar on a terminal), or None when quiet."""
        if self.as_json or not self.err.isatty():
            yield None
            return
        from rich.progress import Progress  # only here: rich takes a while to import

        with Progress(transient=True) as bar:
            tasks: dict[str, Any] = {}

            def report(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(f"{what}: {stage.lower()}", total=total)
                bar.update(tasks[stage], completed=done, total=total)

            yield report
