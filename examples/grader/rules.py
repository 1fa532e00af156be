"""The grading rules, pure (no I/O): names, courses from groups, due dates, lateness, scores.

Each check raises ``Invalid`` with a message naming the field and the problem, which the
pages answer as 400.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

STUDENTS_PREFIX = "course-"
GRADERS_PREFIX = "graders-"
SUBMISSION_SUFFIX = "-submission"
# Course ids and assignment names become parts of project names: keep them short and plain.
NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,39}$")
DEFAULT_POINTS = 100.0


class Invalid(ValueError):
    """A field of a form is wrong; the message names the field and says why."""


@dataclass(frozen=True)
class Course:
    """A course: its id, its students and its graders (hub user names)."""

    id: str
    students: frozenset[str]
    graders: frozenset[str]


def courses(groups: Iterable[Mapping[str, object]]) -> dict[str, Course]:
    """The courses a hub's groups (``GET /hub/api/groups`` models) make: each id that has a
    ``graders-<id>`` group; its students are ``course-<id>``'s members (none if missing)."""
    members: dict[str, frozenset[str]] = {}
    for group in groups:
        users = group.get("users") or []
        assert isinstance(users, list)
        members[str(group["name"])] = frozenset(str(u) for u in users)
    found = {}
    for name, graders in members.items():
        if name.startswith(GRADERS_PREFIX) and NAME.match(cid := name[len(GRADERS_PREFIX) :]):
            students = members.get(STUDENTS_PREFIX + cid, frozenset())
            found[cid] = Course(cid, students, graders)
    return found


def name(field: str, value: str) -> str:
    """A course id or assignment name, checked."""
    value = value.strip()
    if not NAME.match(value):
        raise Invalid(
            f"{field}: {value!r} is not a valid name: 1-40 lowercase letters, digits or '_',"
            " starting with a letter or digit"
        )
    return value


def release_project(course: str, assignment: str) -> str:
    """The name of an assignment's release project (owned by the grader who released it)."""
    return f"{course}-{assignment}"


def submission_project(course: str, assignment: str) -> str:
    """The name of a student's submission project (owned by the student)."""
    return f"{course}-{assignment}{SUBMISSION_SUFFIX}"


def due(value: str) -> datetime:
    """A due date: ISO 8601 *with* a UTC offset (a time without one is ambiguous: nbgrader
    #1932, due dates silently taken as UTC)."""
    value = value.strip()
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise Invalid(
            f"due: {value!r} is not an ISO 8601 date and time, e.g. 2026-12-24T17:00+01:00"
        ) from None
    if when.tzinfo is None or when.utcoffset() is None:
        raise Invalid(f"due: {value!r} has no UTC offset; add one, e.g. {value}+01:00 or {value}Z")
    return when


def points(value: str) -> float:
    """An assignment's maximum score (blank: the default)."""
    if not value.strip():
        return DEFAULT_POINTS
    number = _number("points", value)
    if number <= 0 or number > 10_000:
        raise Invalid(f"points: {value!r} must be more than 0 and at most 10000")
    return number


def score(value: str, out_of: float) -> float:
    """A score between 0 and the assignment's points."""
    number = _number("score", value)
    if not 0 <= number <= out_of:
        raise Invalid(f"score: {value!r} is out of range: give a number from 0 to {out_of:g}")
    return number


def feedback(value: str) -> str:
    """Feedback text (markdown), at most 20,000 characters."""
    if len(value) > 20_000:
        raise Invalid(f"feedback: {len(value)} characters is too long (at most 20000)")
    return value.replace("\r\n", "\n")


def _number(field: str, value: str) -> float:
    try:
        number = float(value.strip())
    except ValueError:
        raise Invalid(f"{field}: {value!r} is not a number") from None
    if number != number or number in (float("inf"), float("-inf")):  # NaN, infinities
        raise Invalid(f"{field}: {value!r} is not a number")
    return number


def late(submitted: datetime | None, due_at: datetime) -> bool | None:
    """Whether a submission came after the due date (None: nothing submitted)."""
    return None if submitted is None else submitted > due_at


def status(submitted: datetime | None, due_at: datetime) -> str:
    """``missing``, ``on time`` or ``late``."""
    is_late = late(submitted, due_at)
    return "missing" if is_late is None else "late" if is_late else "on time"
