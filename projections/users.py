"""The users read model: one row per existing user, folded from the user events.

A batch is applied in three statements whatever its size: load the touched rows, fold the
events in Python with the pure ``evolve``, then delete and upsert the results. That is
what lets a rebuild run at tens of thousands of events per second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from events import models, sql
from events.catalog import users as user_events
from projections import base

queries = sql.Queries(__package__ or "projections", "users.sql")


@dataclass(frozen=True)
class UserRow:
    """One row of the ``users`` table."""

    user_id: UUID
    name: str
    admin: bool
    created: datetime
    updated: datetime
    last_position: int


def evolve(row: UserRow | None, event: models.RecordedEvent) -> UserRow | None:
    """The row after ``event``; ``None`` when the user does not exist (yet, or any more)."""
    data = event.data
    at, position = event.recorded_at, event.position
    if isinstance(data, user_events.UserCreated):
        return UserRow(data.user_id, data.name, data.admin, at, at, position)
    if row is None:
        raise base.ProjectionError(
            f"{event.type} at position {position} for user {event.stream_id} that does not exist"
        )
    if isinstance(data, user_events.UserRenamed):
        return replace(row, name=data.name, updated=at, last_position=position)
    if isinstance(data, user_events.UserAdminChanged):
        return replace(row, admin=data.admin, updated=at, last_position=position)
    if isinstance(data, user_events.UserDeleted):
        return None
    raise base.ProjectionError(f"the users projection does not handle {event.type}")


class UsersProjection:
    """Inline projection of ``users``."""

    name = "users"
    mode: base.Mode = "inline"
    tables = ("users",)
    handles = frozenset(
        m.type
        for m in (
            user_events.UserCreated,
            user_events.UserRenamed,
            user_events.UserAdminChanged,
            user_events.UserDeleted,
        )
    )

    async def apply(self, conn: sql.Connection, events: Sequence[models.RecordedEvent]) -> None:
        """Fold ``events`` into the touched rows and write them back."""
        touched: list[UUID] = list({_user_id(e) for e in events})
        rows: dict[UUID, UserRow | None] = {
            r["user_id"]: UserRow(**dict(r)) for r in await conn.fetch(queries["load"], touched)
        }
        for event in events:
            user_id = _user_id(event)
            rows[user_id] = evolve(rows.get(user_id), event)
        gone = [user_id for user_id, row in rows.items() if row is None]
        live = [row for row in rows.values() if row is not None]
        if gone:
            await conn.execute(queries["delete"], gone)
        if live:
            await conn.execute(queries["upsert"], *_columns(live))


def _user_id(event: models.RecordedEvent) -> UUID:
    user_id: UUID = getattr(event.data, "user_id")  # noqa: B009 - every user event has one
    return user_id


def _columns(rows: list[UserRow]) -> list[list[Any]]:
    return [
        [r.user_id for r in rows],
        [r.name for r in rows],
        [r.admin for r in rows],
        [r.created for r in rows],
        [r.updated for r in rows],
        [r.last_position for r in rows],
    ]
