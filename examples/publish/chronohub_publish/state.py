"""What the service remembers across restarts: its place in the event stream, the projects it
has seen, what each one has published, and its own log of what it did.

Kept as JSON files in the service's data directory, written whole and renamed into place, so
a crash leaves either the old file or the new one. The cursor is saved after each event is
handled; a build is keyed by its commit, so an event handled again after a crash (between the
build and the save) finds its commit already built and does nothing: no push missed, none
built twice.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass
class Site:
    """One project's publishing: the latest good commit, the commits built, the last error."""

    latest: str | None = None
    built: list[str] = field(default_factory=list)
    error: dict[str, Any] | None = None


@dataclass
class State:
    """The service's memory (``state.json``)."""

    cursor: str | None = None
    projects: dict[str, dict[str, str]] = field(default_factory=dict)
    sites: dict[str, Site] = field(default_factory=dict)

    def site(self, project_id: str) -> Site:
        """The site of ``project_id`` (a new one if it has none)."""
        return self.sites.setdefault(project_id, Site())

    def project_id(self, owner: str, name: str) -> str | None:
        """The id of project ``owner/name`` as the service last saw it."""
        for project_id, known in self.projects.items():
            if (known["owner"], known["name"]) == (owner, name):
                return project_id
        return None


class Store:
    """Reads and writes the state and appends to the service's log (``log.jsonl``)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / "state.json"
        self.log_path = data_dir / "log.jsonl"

    def load(self) -> State:
        """The saved state, or a fresh one."""
        if not self.path.exists():
            return State()
        raw = json.loads(self.path.read_text())
        return State(
            cursor=raw["cursor"],
            projects=raw["projects"],
            sites={k: Site(**v) for k, v in raw["sites"].items()},
        )

    def save(self, state: State) -> None:
        """Write ``state`` whole, atomically."""
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(state), sort_keys=True))
        os.replace(tmp, self.path)

    def record(self, kind: str, project: str, **data: Any) -> dict[str, Any]:
        """Append one entry to the service's log: what it published, what failed, what ran.
        Never file contents: paths, commits, durations and error messages only."""
        entry = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "type": kind,
            "project": project,
            **data,
        }
        with self.log_path.open("a") as out:
            out.write(json.dumps(entry, sort_keys=True) + "\n")
        return entry

    def entries(self, limit: int = 200) -> list[dict[str, Any]]:
        """The newest ``limit`` log entries, newest first."""
        if not self.log_path.exists():
            return []
        lines = self.log_path.read_text().splitlines()[-limit:]
        return [json.loads(line) for line in reversed(lines)]
