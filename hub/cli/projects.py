"""What ``chronohub projects`` does: collect the objects of projects that no ref reaches."""

from __future__ import annotations

from rich.console import Console

from events import store
from hub import settings as hub_settings
from hub.projects import gc, storage

stderr = Console(stderr=True, highlight=False, soft_wrap=True)


async def collect(
    event_store: store.EventStore,
    config: hub_settings.Settings,
    *,
    grace_s: float,
    dry_run: bool,
) -> int:
    """Run ``gc.collect`` over every project's repository and say what it removed."""
    place = storage.Storage(
        workers=storage.Workers(1),  # one thread: gc is a background chore, not a race
        repositories=storage.Repositories(
            config.data_dir / "projects", max_push_bytes=config.project_max_push_bytes
        ),
        io_timeout_s=config.project_git_timeout_s,
    )
    async with place.workers:
        done = await gc.collect(event_store, place, grace_s=grace_s, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for result in done:
        stderr.print(
            f"project {result.project_id}: {verb} {len(result.packs)} packs,"
            f" {result.loose} loose objects"
            + (
                f", {result.scraps} unfinished pack files or push quarantines"
                if result.scraps
                else ""
            )
            + f" ({result.bytes:,} bytes)"
        )
    packs = sum(len(result.packs) for result in done)
    loose = sum(result.loose for result in done)
    freed = sum(result.bytes for result in done)
    stderr.print(f"{verb} {packs} packs and {loose} loose objects no ref reaches ({freed:,} bytes)")
    return 0
