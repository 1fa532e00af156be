"""examples/grader's pure parts: courses from groups, names, due dates, scores, lateness; and
its gradebook applying stream events exactly once (SQLite in a temporary directory)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from examples.grader import gradebook, rules


def test_courses_are_the_ids_of_graders_groups() -> None:
    found = rules.courses(
        [
            {"name": "graders-c1", "users": ["grace"]},
            {"name": "course-c1", "users": ["sam", "tom"]},
            {"name": "graders-c2", "users": ["gus"]},  # a course with no students yet
            {"name": "course-c3", "users": ["sam"]},  # no graders: not a course
            {"name": "graders-Bad Name", "users": ["x"]},
            {"name": "staff", "users": ["grace"]},
        ]
    )
    assert sorted(found) == ["c1", "c2"]
    assert found["c1"] == rules.Course("c1", frozenset({"sam", "tom"}), frozenset({"grace"}))
    assert found["c2"].students == frozenset()


def test_due_dates_need_an_offset() -> None:
    assert rules.due("2026-12-24T17:00+01:00") == datetime(
        2026, 12, 24, 16, 0, tzinfo=UTC
    ).astimezone(timezone(timedelta(hours=1)))
    assert rules.due("2026-12-24T16:00Z").utcoffset() == timedelta(0)
    with pytest.raises(rules.Invalid, match="has no UTC offset"):
        rules.due("2026-12-24T17:00")
    with pytest.raises(rules.Invalid, match="is not an ISO 8601"):
        rules.due("next friday")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "is not a number"),
        ("", "is not a number"),
        ("nan", "is not a number"),
        ("inf", "is not a number"),
        ("-0.5", "out of range"),
        ("10.01", "out of range"),
    ],
)
def test_bad_scores_are_refused(value: str, message: str) -> None:
    with pytest.raises(rules.Invalid, match=message):
        rules.score(value, 10)


def test_scores_names_and_points() -> None:
    assert rules.score(" 8.5 ", 10) == 8.5
    assert rules.score("0", 10) == 0
    assert rules.points("") == rules.DEFAULT_POINTS
    with pytest.raises(rules.Invalid, match="points"):
        rules.points("0")
    assert rules.name("assignment", " a1 ") == "a1"
    for bad in ("A1", "a-1", "a/1", "", "x" * 41):
        with pytest.raises(rules.Invalid, match="not a valid name"):
            rules.name("assignment", bad)


def test_lateness_is_the_push_time_against_the_due_date() -> None:
    due = datetime(2026, 12, 24, 17, 0, tzinfo=timezone(timedelta(hours=1)))
    assert rules.status(None, due) == "missing"
    assert rules.status(due - timedelta(seconds=1), due) == "on time"
    assert rules.status(due, due) == "on time"
    assert rules.status(datetime(2026, 12, 24, 16, 0, 1, tzinfo=UTC), due) == "late"


def _event(kind: str, time: str = "2026-12-07T10:00:00+00:00", **data: object) -> dict[str, object]:
    return {"type": kind, "time": time, "data": data}


def test_the_gradebook_applies_each_event_once(tmp_path: Path) -> None:
    book = gradebook.Gradebook(tmp_path / "grader.sqlite")
    created = _event("project.created", project_id="p1", owner="sam", name="c1-a1-submission")
    pushed = _event("project.pushed", project_id="p1", pusher="sam", pusher_kind="user")
    feedback = _event("project.pushed", project_id="p1", pusher="grader", pusher_kind="service")
    assert book.apply("10:1", created)
    assert book.apply("11:2", pushed)
    assert not book.apply("11:2", pushed)  # the same event again (a reconnect's overlap)
    assert not book.apply("10:1", created)  # an older one
    assert book.apply("12:3", feedback)
    assert book.last_event_id() == "12:3"
    book.close()

    again = gradebook.Gradebook(tmp_path / "grader.sqlite")  # a restart
    assert again.last_event_id() == "12:3"
    assert not again.apply("11:2", pushed)
    # the service's own push is not a submission
    assert again.submission_pushes("c1", "a1", "sam") == [datetime(2026, 12, 7, 10, 0, tzinfo=UTC)]
    assert again.has_project("sam", "c1-a1-submission")
    assert again.apply("13:4", _event("project.deleted", project_id="p1", owner="sam", name="x"))
    assert not again.has_project("sam", "c1-a1-submission")
    again.close()


def test_named_queries_are_unique(tmp_path: Path) -> None:
    sql = tmp_path / "q.sql"
    sql.write_text("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")
    with pytest.raises(ValueError, match="query 'a' is defined twice"):
        gradebook.load_queries(sql)
