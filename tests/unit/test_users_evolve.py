"""The users projection's pure fold: one user's row after each of the user events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from events import models
from events.catalog import users as user_events
from projections import base, users
from tests.helpers import Noted

USER = UUID("00000000-0000-4000-8000-000000000001")
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def recorded(event: models.Event, position: int, at: datetime = T0) -> models.RecordedEvent:
    return models.RecordedEvent(
        position=position,
        tx=1000 + position,
        stream_id=user_events.stream_id(USER),
        stream_version=position,
        event_id=uuid4(),
        type=type(event).type,
        schema_version=1,
        data=event,
        metadata=models.Metadata(),
        recorded_at=at,
    )


@pytest.fixture
def alice() -> users.UserRow:
    created = user_events.UserCreated(user_id=USER, name="alice", admin=False)
    row = users.evolve(None, recorded(created, position=1))
    assert row is not None
    return row


def test_created_makes_a_row() -> None:
    created = user_events.UserCreated(user_id=USER, name="alice", admin=True)
    assert users.evolve(None, recorded(created, position=3)) == users.UserRow(
        user_id=USER, name="alice", admin=True, created=T0, updated=T0, last_position=3
    )


def test_renamed_updates_name_updated_and_position(alice: users.UserRow) -> None:
    later = T0 + timedelta(hours=1)
    renamed = user_events.UserRenamed(user_id=USER, old_name="alice", name="alicia")
    row = users.evolve(alice, recorded(renamed, position=5, at=later))
    assert row == users.UserRow(
        user_id=USER, name="alicia", admin=False, created=T0, updated=later, last_position=5
    )


def test_admin_changed_updates_admin_updated_and_position(alice: users.UserRow) -> None:
    later = T0 + timedelta(days=2)
    promoted = user_events.UserAdminChanged(user_id=USER, admin=True)
    row = users.evolve(alice, recorded(promoted, position=9, at=later))
    assert row == users.UserRow(
        user_id=USER, name="alice", admin=True, created=T0, updated=later, last_position=9
    )


def test_a_sequence_of_events_folds_in_order(alice: users.UserRow) -> None:
    history = [
        recorded(user_events.UserAdminChanged(user_id=USER, admin=True), 2, T0 + timedelta(1)),
        recorded(user_events.UserRenamed(user_id=USER, old_name="alice", name="al"), 3),
        recorded(user_events.UserAdminChanged(user_id=USER, admin=False), 4, T0 + timedelta(3)),
    ]
    row: users.UserRow | None = alice
    for event in history:
        row = users.evolve(row, event)
    assert row == users.UserRow(
        user_id=USER,
        name="al",
        admin=False,
        created=T0,
        updated=T0 + timedelta(3),
        last_position=4,
    )


def test_deleted_removes_the_row(alice: users.UserRow) -> None:
    deleted = user_events.UserDeleted(user_id=USER, name="alice")
    assert users.evolve(alice, recorded(deleted, position=2)) is None


def test_evolve_does_not_change_the_row_it_is_given(alice: users.UserRow) -> None:
    before = alice
    renamed = user_events.UserRenamed(user_id=USER, old_name="alice", name="bob")
    users.evolve(alice, recorded(renamed, position=2))
    assert alice == before
    assert alice.name == "alice"


@pytest.mark.parametrize(
    "event",
    [
        user_events.UserRenamed(user_id=USER, old_name="a", name="b"),
        user_events.UserAdminChanged(user_id=USER, admin=True),
        user_events.UserDeleted(user_id=USER, name="a"),
    ],
)
def test_an_event_for_a_user_that_does_not_exist_is_an_error(event: models.Event) -> None:
    with pytest.raises(
        base.ProjectionError, match=r"at position 7 for user user-\S+ that does not exist"
    ):
        users.evolve(None, recorded(event, position=7))


def test_an_event_the_projection_does_not_handle_is_an_error(alice: users.UserRow) -> None:
    with pytest.raises(base.ProjectionError, match=r"does not handle test\.noted"):
        users.evolve(alice, recorded(Noted(text="x"), position=2))


def test_the_projection_handles_exactly_the_user_events() -> None:
    assert users.UsersProjection.handles == {
        "user.created",
        "user.renamed",
        "user.admin_changed",
        "user.deleted",
    }
    assert users.UsersProjection.mode == "inline"
