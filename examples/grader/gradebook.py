"""The service's own data: one SQLite file in its working directory.

SQLite is enough here: one process writes it (the service), its writes are small and rare
(a push, a grade), and it needs nothing installed. The hub's PostgreSQL is not the service's
to write: the service uses only what any service may. Calls are synchronous: each is a
sub-millisecond local query, cheaper than a hop to a thread.

The event cursor is saved in the same transaction as what an event changed, so after a
crash or restart each event takes effect exactly once.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from . import rules

# A dozen named queries do not justify a dependency (aiosql): read "-- name: x" sections.
_HEADER = re.compile(r"^-- name: (\S+)\s*$", re.MULTILINE)


def load_queries(path: Path) -> dict[str, str]:
    """The named queries of a ``.sql`` file; a name used twice is refused."""
    parts = _HEADER.split(path.read_text())
    queries: dict[str, str] = {}
    for name, text in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"{path.name}: query {name!r} is defined twice")
        queries[name] = text.strip()
    return queries


Q = load_queries(Path(__file__).with_name("gradebook.sql"))


@dataclass(frozen=True)
class Assignment:
    """A released assignment."""

    course: str
    name: str
    release_owner: str
    due: datetime
    points: float
    released_by: str
    released_at: datetime


@dataclass(frozen=True)
class Grade:
    """A grader's score and feedback for one submission."""

    score: float
    feedback: str
    graded_by: str
    graded_at: datetime
    returned_at: datetime | None
    returned_commit: str | None


def event_order(event_id: str) -> tuple[int, int]:
    """An event id ``<tx>:<position>`` as a comparable pair (the stream's order)."""
    tx, position = event_id.split(":")
    return int(tx), int(position)


class Gradebook:
    """Assignments, grades, and what the service learnt from the hub's event stream."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)  # transactions are explicit
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.executescript(Q["schema"])

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- the event stream ---------------------------------------------------------------

    def last_event_id(self) -> str | None:
        """The id of the last event applied (None: none yet)."""
        row = self.db.execute(Q["last_event_id"]).fetchone()
        return None if row is None else str(row[0])

    def apply(self, event_id: str, event: Mapping[str, Any]) -> bool:
        """Apply one ``project.*`` event and move the cursor, together; False (nothing done)
        for an event at or before the cursor."""
        last = self.last_event_id()
        if last is not None and event_order(event_id) <= event_order(last):
            return False
        kind, data = event["type"], event["data"]
        with self.transaction() as db:
            if kind == "project.created" or kind == "project.renamed":
                db.execute(
                    Q["project_named"],
                    {
                        "project_id": data["project_id"],
                        "owner": data["owner"],
                        "name": data["name"],
                    },
                )
            elif kind == "project.deleted":
                db.execute(Q["project_deleted"], {"project_id": data["project_id"]})
            elif kind == "project.pushed":
                db.execute(
                    Q["push_received"],
                    {
                        "event_id": event_id,
                        "project_id": data["project_id"],
                        "pusher": data["pusher"],
                        "pusher_kind": data.get("pusher_kind", "user"),
                        # the hub's receive time, never a time the student wrote
                        "pushed_at": event["time"],
                    },
                )
            db.execute(Q["set_last_event_id"], {"event_id": event_id})
        return True

    def submission_pushes(self, course: str, assignment: str, student: str) -> list[datetime]:
        """When ``student`` pushed to their submission project, oldest first (pushes by
        anyone else, such as the service's feedback, are not submissions)."""
        rows = self.db.execute(
            Q["submission_pushes"],
            {"student": student, "project": rules.submission_project(course, assignment)},
        ).fetchall()
        return [datetime.fromisoformat(r["pushed_at"]) for r in rows]

    def has_project(self, owner: str, name: str) -> bool:
        """Whether the stream has shown a project ``owner/name`` (created, not deleted)."""
        return (
            self.db.execute(Q["project_known"], {"owner": owner, "name": name}).fetchone()
            is not None
        )

    # --- assignments and grades ---------------------------------------------------------

    def save_assignment(self, assignment: Assignment) -> None:
        """Record a release (a release again changes the due date and points)."""
        with self.transaction() as db:
            db.execute(
                Q["save_assignment"],
                {
                    "course": assignment.course,
                    "name": assignment.name,
                    "release_owner": assignment.release_owner,
                    "due": assignment.due.isoformat(),
                    "points": assignment.points,
                    "released_by": assignment.released_by,
                    "released_at": assignment.released_at.isoformat(),
                },
            )

    def assignments(self, course: str) -> list[Assignment]:
        """A course's assignments, by due date."""
        rows = self.db.execute(Q["assignments"], {"course": course}).fetchall()
        return [_assignment(r) for r in rows]

    def assignment(self, course: str, name: str) -> Assignment | None:
        """One assignment (None: not released)."""
        row = self.db.execute(Q["assignment"], {"course": course, "name": name}).fetchone()
        return None if row is None else _assignment(row)

    def save_grade(
        self, course: str, assignment: str, student: str, score: float, feedback: str,
        grader: str, at: datetime,
    ) -> None:  # fmt: skip
        """Record (or change) a score and feedback."""
        with self.transaction() as db:
            db.execute(
                Q["save_grade"],
                {
                    "course": course, "assignment": assignment, "student": student,
                    "score": score, "feedback": feedback, "graded_by": grader,
                    "graded_at": at.isoformat(),
                },
            )  # fmt: skip

    def grade(self, course: str, assignment: str, student: str) -> Grade | None:
        """A submission's grade (None: not graded)."""
        row = self.db.execute(
            Q["grade"], {"course": course, "assignment": assignment, "student": student}
        ).fetchone()
        if row is None:
            return None
        return Grade(
            score=row["score"],
            feedback=row["feedback"],
            graded_by=row["graded_by"],
            graded_at=datetime.fromisoformat(row["graded_at"]),
            returned_at=_time(row["returned_at"]),
            returned_commit=row["returned_commit"],
        )

    def grade_returned(
        self, course: str, assignment: str, student: str, at: datetime, commit: str
    ) -> None:
        """Record that the feedback was pushed to the student (commit ``commit``)."""
        with self.transaction() as db:
            db.execute(
                Q["grade_returned"],
                {"course": course, "assignment": assignment, "student": student,
                 "returned_at": at.isoformat(), "commit": commit},
            )  # fmt: skip


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _assignment(row: sqlite3.Row) -> Assignment:
    return Assignment(
        course=row["course"],
        name=row["name"],
        release_owner=row["release_owner"],
        due=datetime.fromisoformat(row["due"]),
        points=row["points"],
        released_by=row["released_by"],
        released_at=datetime.fromisoformat(row["released_at"]),
    )
