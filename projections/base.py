"""What a projection is, and the set of them the hub runs.

A projection owns some tables (nothing else writes them), names the event types it
``handles`` and updates its tables for a batch of events in ``apply``. It never reads
the clock: every value it writes comes from the events, so a rebuild reproduces the live
tables exactly. *Inline* projections run inside the append transaction (read-your-writes);
*async* ones run from a subscription with their checkpoint in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, Protocol

from events import models, sql

Mode = Literal["inline", "async"]


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


class Inline:
    """The inline projections, in the shape ``events.store.EventStore`` calls them."""

    def __init__(self, projections: Iterable[Projection]) -> None:
        self.projections = [p for p in projections if p.mode == "inline"]
        self._types = frozenset().union(*(p.handles for p in self.projections))

    def handles_any(self, types: Iterable[str]) -> bool:
        """Whether any of ``types`` concerns an inline projection."""
        return not self._types.isdisjoint(types)

    async def apply(self, conn: sql.Connection, events: Sequence[models.RecordedEvent]) -> None:
        """Apply each inline projection to the events it handles."""
        for projection in self.projections:
            mine = [e for e in events if e.type in projection.handles]
            if mine:
                await projection.apply(conn, mine)


class Together:
    """Several projections replayed as one: each page of the log is read once and each
    projection applies the events it handles (``state --at`` builds them all this way, rather
    than reading the log once per projection)."""

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


def by_name(projections: Iterable[Projection], name: str) -> Projection:
    """The projection called ``name``; ``ProjectionError`` naming the known ones otherwise."""
    known = {p.name: p for p in projections}
    try:
        return known[name]
    except KeyError:
        raise ProjectionError(
            f"no projection named {name!r}; known: {', '.join(sorted(known))}"
        ) from None
