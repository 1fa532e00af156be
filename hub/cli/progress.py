"""Progress bars with events/s for the CLI's long commands (rebuild, verify, export, import)."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

Report = Callable[[int, int | None], None]
"""Called with (events done, events in all or None when unknown)."""


def bar(console: Console, *, enabled: bool = True) -> Progress:
    """A progress display on ``console`` showing count, events/s, elapsed and remaining."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} events/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
    )


def reporter(
    progress: Progress, description: str, total: int | None = None, *, exact: bool = True
) -> Report:
    """A task on ``progress``, updated with (done, total); ``exact=False`` ignores the total."""
    task = progress.add_task(description, total=total, rate="-")
    start = time.monotonic()

    def report(done: int, total: int | None) -> None:
        rate = f"{done / max(time.monotonic() - start, 1e-6):,.0f}"
        total = max(total, done) if exact and total is not None else None
        progress.update(task, completed=done, total=total, rate=rate)

    return report
