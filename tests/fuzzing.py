"""The fuzz tests' budget and the byte strategies they share.

Every fuzz test runs in the suite with a small, fixed budget (the whole fuzz set takes well
under 30 s on a 2-core machine), the same cases every run; ``FUZZ_EXAMPLES=<n>`` gives every
fuzz test ``n`` new random cases for a longer run by hand, e.g.
``FUZZ_EXAMPLES=20000 pytest tests/unit/test_fuzz_collab.py``.
A crash found becomes a regression test of its own, named for what it found.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# A hang or an allocation of gigabytes blows this by far; a loaded machine does not.
DEADLINE_MS = 2000


def examples(default: int) -> int:
    """``default``, or ``FUZZ_EXAMPLES`` when it is set (to run longer by hand)."""
    raw = os.environ.get("FUZZ_EXAMPLES")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"FUZZ_EXAMPLES must be a whole number, not {raw!r}") from None
    if value < 1:
        raise ValueError(f"FUZZ_EXAMPLES must be at least 1, not {value}")
    return value


def budget(default: int) -> settings:
    """hypothesis settings of a fuzz test: ``examples(default)`` cases and the fuzz deadline.
    In the suite the cases are the same every run (derandomized, no example database), so a
    run fails only on a change of the code; with ``FUZZ_EXAMPLES`` they are new each time."""
    return settings(
        max_examples=examples(default),
        deadline=DEADLINE_MS,
        database=None,
        derandomize=not os.environ.get("FUZZ_EXAMPLES"),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


T = TypeVar("T")


def collect(strategy: st.SearchStrategy[T], count: int) -> list[T]:
    """``examples(count)`` values drawn by hypothesis, for a test that cannot be ``@given``
    itself (an async one on a live server)."""
    out: list[T] = []

    @budget(count)
    @given(strategy)
    def draw(value: T) -> None:
        out.append(value)

    draw()
    return out


def var_uint(value: int) -> bytes:
    """lib0's varUint (little-endian base 128), as git and Yjs peers write it."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


@st.composite
def mutated(draw: st.DrawFn, samples: Sequence[bytes]) -> bytes:
    """One of ``samples`` with a few bytes flipped, inserted, deleted, or the tail cut off."""
    data = bytearray(draw(st.sampled_from(samples)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(("flip", "insert", "delete", "truncate", "duplicate")))
        at = draw(st.integers(0, len(data)))
        if op == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and at < len(data):
            del data[at]
        elif op == "truncate":
            del data[at:]
        elif op == "duplicate":
            data[at:at] = data[at : at + draw(st.integers(1, 8))]
    return bytes(data)
