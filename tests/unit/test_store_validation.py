"""The store refuses bad appends before it touches the database, and escapes LIKE patterns.

The stores here have no pool at all: an append that got past validation would fail with an
AttributeError on ``None.acquire``, not with the error the test expects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import uuid4

import pytest

from events import errors, models, store
from tests.helpers import Noted


@pytest.fixture
def no_pool_store() -> store.EventStore:
    return store.EventStore(pool=None)  # type: ignore[arg-type]


def one_event() -> list[models.Event]:
    return [Noted(text="a")]


@pytest.mark.parametrize("stream_id", ["User-1", "user", "user-has space", "-1", "user-", "1-x"])
async def test_a_bad_stream_id_is_refused(no_pool_store: store.EventStore, stream_id: str) -> None:
    with pytest.raises(errors.InvalidEvent, match="must look like '<type>-<id>'"):
        await no_pool_store.append(stream_id, one_event())


async def test_a_stream_id_over_200_characters_of_id_is_refused(
    no_pool_store: store.EventStore,
) -> None:
    with pytest.raises(errors.InvalidEvent, match="stream id"):
        await no_pool_store.append("note-" + "x" * 201, one_event())


async def test_a_stream_id_with_a_trailing_newline_is_refused(
    no_pool_store: store.EventStore,
) -> None:
    with pytest.raises(errors.InvalidEvent):
        await no_pool_store.append("note-a\n", one_event())


@pytest.mark.parametrize("expected", [-2, -100, True, False, 1.0, "1", None])
async def test_a_bad_expected_version_is_refused(
    no_pool_store: store.EventStore, expected: Any
) -> None:
    with pytest.raises(errors.InvalidEvent, match="expected version must be"):
        await no_pool_store.append("note-a", one_event(), expected=expected)


async def test_an_empty_append_is_refused(no_pool_store: store.EventStore) -> None:
    with pytest.raises(errors.InvalidEvent, match="at least one event"):
        await no_pool_store.append("note-a", [])


async def test_too_many_events_in_one_append_are_refused(no_pool_store: store.EventStore) -> None:
    events = [Noted(text="a")] * (store.MAX_EVENTS_PER_APPEND + 1)
    with pytest.raises(errors.InvalidEvent, match="at most 10000 events"):
        await no_pool_store.append("note-a", events)


@pytest.mark.parametrize(
    "make_ids",
    [
        lambda: [uuid4(), uuid4()],  # two ids for one event
        lambda: [],  # none
    ],
)
async def test_the_wrong_number_of_event_ids_is_refused(
    no_pool_store: store.EventStore, make_ids: Callable[[], list[Any]]
) -> None:
    with pytest.raises(errors.InvalidEvent, match="one for each event"):
        await no_pool_store.append("note-a", one_event(), event_ids=make_ids())


async def test_duplicate_event_ids_are_refused(no_pool_store: store.EventStore) -> None:
    same = uuid4()
    with pytest.raises(errors.InvalidEvent, match="must be distinct"):
        await no_pool_store.append(
            "note-a", [Noted(text="a"), Noted(text="b")], event_ids=[same, same]
        )


@pytest.mark.parametrize("not_an_event", [{"text": "a"}, "a", None, models.Metadata()])
async def test_an_object_that_is_not_an_event_is_refused(
    no_pool_store: store.EventStore, not_an_event: Any
) -> None:
    with pytest.raises(errors.InvalidEvent, match="not an event model"):
        await no_pool_store.append("note-a", [Noted(text="ok"), not_an_event])


async def test_an_event_of_a_type_the_registry_lacks_is_refused() -> None:
    narrow = store.EventStore(pool=None, registry=models.Registry())  # type: ignore[arg-type]
    with pytest.raises(errors.UnknownEventType, match=r"test\.noted"):
        await narrow.append("note-a", one_event())


async def test_an_unregistered_subclass_of_a_registered_event_is_refused(
    no_pool_store: store.EventStore,
) -> None:
    class Unregistered(Noted):
        """Inherits Noted's type name but is not the model registered for it."""

    with pytest.raises(errors.UnknownEventType, match=r"test\.noted"):
        await no_pool_store.append("note-a", [Unregistered(text="a")])


async def test_a_payload_over_the_limit_is_refused() -> None:
    small = store.EventStore(pool=None, max_event_bytes=1024)  # type: ignore[arg-type]
    with pytest.raises(errors.PayloadTooLarge, match="over the limit of 1024 bytes") as caught:
        await small.append("note-a", [Noted(text="x" * 2000)])
    assert caught.value.limit == 1024
    assert caught.value.size == len(Noted(text="x" * 2000).model_dump_json())
    assert isinstance(caught.value, errors.InvalidEvent)


async def test_the_size_limit_counts_bytes_not_characters() -> None:
    small = store.EventStore(pool=None, max_event_bytes=1024)  # type: ignore[arg-type]
    text = "é" * 600  # 600 characters, 1200 bytes of UTF-8
    with pytest.raises(errors.PayloadTooLarge) as caught:
        await small.append("note-a", [Noted(text=text)])
    assert caught.value.size > 1200


async def test_a_payload_just_under_the_limit_gets_past_validation() -> None:
    small = store.EventStore(pool=None, max_event_bytes=1024)  # type: ignore[arg-type]
    with pytest.raises(AttributeError):  # validation passed: it reached the (missing) pool
        await small.append("note-a", [Noted(text="x" * 1000)])


async def test_an_event_built_without_validation_is_refused(
    no_pool_store: store.EventStore,
) -> None:
    with pytest.raises(errors.InvalidEvent, match=r"test\.noted payload is invalid"):
        await no_pool_store.append("note-a", [Noted.model_construct(text=123)])


async def test_a_session_append_validates_the_same_way(no_pool_store: store.EventStore) -> None:
    session = store.Session(no_pool_store, conn=None)
    with pytest.raises(errors.InvalidEvent, match="at least one event"):
        await session.append("note-a", [])
    assert session.appended is False


# --- LIKE patterns of type prefixes ------------------------------------------------------------


def test_like_patterns_are_none_without_prefixes() -> None:
    assert store.EventFilter().like_patterns() is None


def test_like_patterns_append_a_wildcard() -> None:
    event_filter = store.EventFilter(type_prefixes=("server.", "user."))
    assert event_filter.like_patterns() == ["server.%", "user.%"]


@pytest.mark.parametrize(
    ("prefix", "pattern"),
    [
        ("user_", r"user\_%"),
        ("100%", r"100\%%"),
        ("back\\slash", r"back\\slash%"),
        ("a_b%c\\d", r"a\_b\%c\\d%"),
        ("", "%"),
    ],
)
def test_like_patterns_escape_wildcards_and_backslash(prefix: str, pattern: str) -> None:
    assert store.EventFilter(type_prefixes=(prefix,)).like_patterns() == [pattern]
