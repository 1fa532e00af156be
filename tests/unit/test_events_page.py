"""The audit timeline's pure parts: the form's filters as the audit API's query (and every bad
value refused naming its field), the live stream's URL, the subjects an event names."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hub import errors
from hub.audit import history
from hub.pages import events as events_page

TYPES = frozenset({"user.created", "user.deleted", "group.created"})


def query(**fields: str) -> history.Query:
    return events_page.query_of(events_page.Filters(**fields), TYPES, before=None, limit=50)


def test_a_type_is_exact_and_a_kind_is_a_prefix() -> None:
    assert query(type="user.created").types == ("user.created",)
    kind = query(type="user.")
    assert (kind.types, kind.type_prefixes) == (None, ("user.",))
    assert query().types is None


def test_times_without_a_zone_are_utc_and_with_one_are_kept() -> None:
    q = query(since="2025-01-31T12:00", until="2025-02-01T00:00:00+01:00")
    assert q.since == datetime(2025, 1, 31, 12, 0, tzinfo=UTC)
    assert q.until == datetime(2025, 1, 31, 23, 0, tzinfo=UTC)
    assert q.descending
    assert q.limit == 50


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"type": "user.bogus"}, "type: no event type is called 'user.bogus'"),
        ({"type": "bogus."}, "type: no kind of event is called 'bogus.'"),
        ({"since": "soon"}, "from: 'soon' is not a date and time"),
        ({"until": "2025-02-30T00:00"}, "to: '2025-02-30T00:00' is not a date and time"),
        ({"since": "2025-01-02T00:00", "until": "2025-01-01T00:00"}, "from: must be before to"),
        ({"since": "2025-01-01T00:00", "until": "2025-01-01T00:00"}, "from: must be before to"),
    ],
)
def test_bad_filters_name_their_field(fields: dict[str, str], message: str) -> None:
    with pytest.raises(errors.BadRequest) as raised:
        query(**fields)
    assert raised.value.message.startswith(message)


def test_the_stream_carries_the_pages_filters() -> None:
    q = query(type="user.", user="a&b", group="team", since="2025-01-31T12:00")
    assert events_page.stream_url(q) == (
        "/hub/api/events/stream?type_prefix=user.&user=a%26b&group=team"
        "&since=2025-01-31T12%3A00%3A00Z"
    )
    assert events_page.stream_url(query()) == "/hub/api/events/stream"


def test_links_keep_the_filters() -> None:
    filters = events_page.Filters(type="user.", user="<ann>")
    assert events_page.page_url(filters, before="7") == (
        "/hub/events?type=user.&user=%3Cann%3E&before=7"
    )
    assert events_page.page_url(events_page.Filters()) == "/hub/events"


def test_the_subjects_of_an_event_are_its_user_and_group_ids_once_each() -> None:
    data = {
        "user_id": "u1",
        "user_ids": ["u2", "u1"],
        "group_id": "g1",
        "principal": "g1",
        "name": "not an id",
        "owner_id": 3,
    }
    assert history.subject_ids(data) == ["u1", "u2", "g1"]
    assert history.subject_ids({}) == []
