"""``make bench-scale``'s command line (``bench/scale.py``). Its ``--small`` run takes minutes
(a million-event log, a hundred rooms and clients), too long for the suite: only the arguments
are checked here, never a timing."""

from __future__ import annotations

import pytest

from bench import scale


def test_full_sizes_by_default() -> None:
    args = scale.parse_args([])
    assert (args.users, args.groups, args.clients, args.rooms, args.clones, args.events) == (
        10_000, 1_000, 1_000, 1_000, 100, 10_000_000,
    )  # fmt: skip
    assert not args.small


def test_small_is_a_tenth_of_each_size_unless_one_is_given() -> None:
    args = scale.parse_args(["--small", "--rooms", "7"])
    assert (args.users, args.groups, args.clients, args.rooms, args.clones, args.events) == (
        1_000, 100, 100, 7, 10, 1_000_000,
    )  # fmt: skip
    assert args.small


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--users", "0"], "must be above 0: 0"),
        (["--rooms", "many"], "not a whole number: 'many'"),
        (["--users", "50", "--groups", "100"], "--users (50) must be at least --groups (100)"),
        (["--users", "4", "--groups", "2"], "--users must be at least 8"),
        (["--users", "100", "--groups", "10", "--events", "200"], "--events must be at least 3"),
        (["--seconds", "0"], "--seconds must be positive"),
    ],
)
def test_bad_arguments_are_refused_naming_the_problem(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        scale.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_missed_target_says_by_how_much() -> None:
    figures: dict[str, float] = {
        key: target if op == ">=" else 0 for key, (op, target) in scale.TARGETS.items()
    }
    figures |= {"users_list_p99_ms": 250.0, "deliveries_per_s": 2500, "clones_errors": 3}
    del figures["state_at_s"]
    notes = scale.misses(figures)
    assert "users_list_p99_ms = 250.0 misses its target <= 100 (2.5x)" in notes
    assert "deliveries_per_s = 2,500 misses its target >= 5,000 (2.0x)" in notes
    assert "clones_errors = 3 misses its target <= 0" in notes
    assert "state_at_s: not measured" in notes
    assert len(notes) == 4


def test_parts_are_chosen_by_name() -> None:
    assert scale.parse_args([]).parts == scale.PARTS
    assert scale.parse_args(["--parts", "rooms, clones"]).parts == ("rooms", "clones")


@pytest.mark.parametrize(
    ("value", "message"), [("rooms,kernels", "unknown part 'kernels'"), (",", "no part named")]
)
def test_unknown_parts_are_refused(
    value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        scale.parse_args(["--parts", value])
    assert message in capsys.readouterr().err
