"""What a projection is, and the set of them the hub runs.

A projection owns some tables (nothing else writes them), names the event types it
``handles`` and updates its tables for a batch of events in ``apply``. It never reads
the clock: every value it writes comes from the events, so a rebuild reproduces the live
tables exactly. *Inline* projections run inside the append transaction (read-your-writes);
*async* ones run from a subscription with their checkpoint in the same transaction.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal, Protocol

from events import models, sql

Mode = Literal["inline", "async"]
Handler = Callable[[sql.Connection, models.RecordedEvent], Awaitable[None]]
# Applies a run of consecutive events of one type at once.
RunHandler = Callable[[sql.Connection, Sequence[models.RecordedEvent]], Awaitable[None]]


class Projection(Protocol):
    """A read model: its name, tables, the events it handles and how it applies them."""

    @property
    def name(self) -> str:
        """Stable name, used for the checkpoint and the CLI."""
        ...

    @property
    def mode(self) -> Mode:
        """``inline`` (in the append transaction) or ``async`` (from a subscription)."""
        ...

    @property
    def tables(self) -> tuple[str, ...]:
        """The tables this projection owns, in the ``public`` schema when live."""
        ...

    @property
    def handles(self) -> frozenset[str]:
        """The event types that change its tables."""
        ...

    async def apply(self, conn: sql.Connection, events: Sequence[models.RecordedEvent]) -> None:
        """Update the tables for ``events`` (all of handled types, in global order)."""
        ...


class ProjectionError(Exception):
    """A projection that cannot be found, rebuilt or verified."""


def payload(event: models.RecordedEvent, model: type[models.Event]) -> Any:
    """The event's payload, which the registry guarantees is a ``model``."""
    if type(event.data) is not model:
        raise ProjectionError(f"{event.type} at {event.position} is not a {model.__name__}")
    return event.data


class ByType:
    """A projection that applies each event with the handler registered for its type, in
    order; a run of consecutive events of one type goes to its run handler at once, where
    the subclass has one (one statement for the run instead of one per event)."""

    name: str
    tables: tuple[str, ...]
    mode: Mode = "inline"
    handlers: dict[str, Handler]
    run_handlers: Mapping[str, RunHandler] = MappingProxyType({})

    @property
    def handles(self) -> frozenset[str]:
        """The event types that change its tables."""
        return frozenset(self.handlers) | frozenset(self.run_handlers)

    async def apply(self, conn: sql.Connection, events: Sequence[models.RecordedEvent]) -> None:
        """Apply the events in order."""
        for kind, run in itertools.groupby(events, key=lambda e: e.type):
            if kind in self.run_handlers:
                await self.run_handlers[kind](conn, list(run))
            else:
                for event in run:
                    await self.handlers[kind](conn, event)


class Together:
    """Several projections applied as one: each projection applies the events of a batch it
    handles, in the order given. The inline projections run this way in the append
    transaction; ``state --at`` replays them all this way, each page of the log read once
    (as a scratch build, so no checkpoint is kept: hence ``async``, never run inline)."""

    mode: Mode = "async"

    def __init__(self, projections: Iterable[Projection]) -> None:
        self.projections = list(projections)
        self.name = "+".join(p.name for p in self.projections)
        self.tables = tuple(t for p in self.projections for t in p.tables)
        self.handles = frozenset().union(*(p.handles for p in self.projections))

    async def apply(self, conn: sql.Connection, events: Sequence[models.RecordedEvent]) -> None:
        """Apply each projection to the events it handles, in the order given."""
        for projection in self.projections:
            mine = [e for e in events if e.type in projection.handles]
            if mine:
                await projection.apply(conn, mine)


class Inline(Together):
    """The inline projections, in the shape ``events.store.EventStore`` calls them."""

    mode: Mode = "inline"

    def __init__(self, projections: Iterable[Projection]) -> None:
        super().__init__(p for p in projections if p.mode == "inline")

    def handles_any(self, types: Iterable[str]) -> bool:
        """Whether any of ``types`` concerns an inline projection."""
        return not self.handles.isdisjoint(types)


def by_name(projections: Iterable[Projection], name: str) -> Projection:
    """The projection called ``name``; ``ProjectionError`` naming the known ones otherwise."""
    known = {p.name: p for p in projections}
    try:
        return known[name]
    except KeyError:
        raise ProjectionError(
            f"no projection named {name!r}; known: {', '.join(sorted(known))}"
        ) from None
