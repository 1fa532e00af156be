"""Which snapshots a pruning drops (``projections.snapshots.thinned``): never the newest, and
those kept stay spread over the log."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from events import models
from projections import snapshots

WHEN = datetime(2026, 12, 7, tzinfo=UTC)


def at(*positions: int) -> list[snapshots.Snapshot]:
    return [
        snapshots.Snapshot(f"snapshot_{p:016x}", models.Checkpoint(p, p), WHEN, {}, p, WHEN)
        for p in positions
    ]


def positions(found: list[snapshots.Snapshot]) -> list[int]:
    return [s.checkpoint.position for s in found]


def test_the_snapshot_whose_neighbours_are_closest_goes_first() -> None:
    assert positions(snapshots.thinned(at(100, 200, 210, 300), 1)) == [210]
    assert positions(snapshots.thinned(at(10, 20, 30, 100, 110), 2)) == [10, 20]


def test_the_newest_is_never_dropped() -> None:
    assert positions(snapshots.thinned(at(5, 1000), 5)) == [5]
    assert snapshots.thinned(at(7), 1) == []
    assert snapshots.thinned([], 3) == []


@given(st.lists(st.integers(1, 10**7), min_size=1, max_size=30, unique=True), st.integers(0, 40))
def test_a_pruning_keeps_the_newest_and_drops_what_it_is_asked(
    found: list[int], count: int
) -> None:
    kept = at(*sorted(found))
    dropped = snapshots.thinned(kept, count)
    assert len(dropped) == min(count, len(kept) - 1)
    assert kept[-1] not in dropped
    assert len(set(positions(dropped))) == len(dropped)
