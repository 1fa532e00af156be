"""The port picker (``hub.ports``): ports of a range nothing listens on, none handed out twice
before its server binds it, a clear error when the range is used up; and the tests' per-worker
slices (``tests.ports``)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from hub import ports
from tests import ports as test_ports


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def free_span(size: int) -> tuple[int, int]:
    """``size`` consecutive ports of this worker's tests' slice nothing listens on now."""
    low, high = test_ports.TESTS_RANGE
    for start in range(low, high - size + 2):
        if all(ports.listening_possible("127.0.0.1", p) for p in range(start, start + size)):
            return start, start + size - 1
    pytest.fail(f"no {size} free consecutive ports in {low}-{high}")


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A socket listening on a port of this worker's slice."""
    with socket.create_server(("127.0.0.1", test_ports.free_port())) as sock:
        yield sock


@pytest.mark.parametrize(
    ("text", "span"),
    [("20000-29999", (20000, 29999)), (" 1 - 65535 ", (1, 65535)), ("8000-8000", (8000, 8000))],
)
def test_a_range_is_low_dash_high(text: str, span: tuple[int, int]) -> None:
    assert ports.parse(text) == span


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("29999-20000", "reversed: write 20000-29999"),
        ("0-100", "0 is not a port"),
        ("20000-65536", "65536 is not a port"),
        ("20000", "not LOW-HIGH"),
        ("20000-", "not LOW-HIGH"),
        ("-5-10", "not LOW-HIGH"),
        ("a-b", "not LOW-HIGH"),
        ("20000:29999", "not LOW-HIGH"),
    ],
)
def test_a_bad_range_is_refused_saying_why(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        ports.parse(text)


def test_ports_come_from_the_range_and_are_not_handed_out_twice() -> None:
    low, high = span = free_span(5)
    picker = ports.Ports(span)
    picked = [picker.pick("127.0.0.1") for _ in range(5)]
    assert sorted(picked) == list(range(low, high + 1))  # each once, none outside


def test_a_port_something_listens_on_is_skipped(listener: socket.socket) -> None:
    taken = listener.getsockname()[1]
    picker = ports.Ports((taken, taken + 1))
    if not ports.listening_possible("127.0.0.1", taken + 1):
        pytest.skip(f"{taken + 1} is taken too")
    assert picker.pick("127.0.0.1") == taken + 1


def test_an_exhausted_range_says_so_and_how_to_widen_it(listener: socket.socket) -> None:
    taken = listener.getsockname()[1]
    picker = ports.Ports((taken, taken))
    with pytest.raises(ports.PortsExhausted, match=rf"port_range {taken}-{taken} .*taken") as info:
        picker.pick("127.0.0.1")
    assert info.value.span == (taken, taken)
    assert "CHRONOHUB_PORT_RANGE" in str(info.value)


def test_a_port_handed_out_is_held_until_its_server_had_time_to_bind_it() -> None:
    clock = Clock()
    span = free_span(1)
    picker = ports.Ports(span, clock=clock)
    assert picker.pick("127.0.0.1") == span[0]  # not bound by anyone yet...
    with pytest.raises(ports.PortsExhausted, match="of its 1, 1 were handed out"):
        picker.pick("127.0.0.1")  # ...but not handed out again
    clock.now += ports.HOLD_S
    assert picker.pick("127.0.0.1") == span[0]  # its server never came: free again


def test_the_kernels_choice_when_no_range_is_set() -> None:
    picker = ports.Ports.from_setting(None)
    picked = {picker.pick("127.0.0.1") for _ in range(20)}
    assert len(picked) == 20  # never the same twice while held
    assert all(ports.listening_possible("127.0.0.1", p) for p in picked)


def test_ipv6_addresses_are_picked_for() -> None:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    port = ports.Ports(free_span(1)).pick("::1")
    with socket.create_server(("::1", port), family=socket.AF_INET6):
        pass


def test_the_setting_is_parsed_into_a_picker() -> None:
    assert ports.Ports.from_setting("20000-20009").span == (20000, 20009)
    with pytest.raises(ValueError, match="reversed"):
        ports.Ports.from_setting("20009-20000")


# --- the tests' own ports: a slice per pytest-xdist worker ---


def ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as file:
            low, high = file.read().split()
    except OSError:
        return 32768, 60999  # Linux's default
    return int(low), int(high)


@pytest.mark.parametrize("worker", ["", "gw0", "gw1", "gw2", "gw19", "gw20"])
def test_a_workers_slice_lies_outside_the_ephemeral_range(worker: str) -> None:
    low, high = test_ports.worker_slice(worker)
    first, last = ephemeral_range()
    assert high < first or low > last
    assert high - low + 1 == test_ports.SLICE


def test_workers_slices_do_not_overlap() -> None:
    slices = [test_ports.worker_slice(f"gw{n}") for n in range(20)]
    taken = [port for low, high in slices for port in range(low, high + 1)]
    assert len(taken) == len(set(taken))
    assert test_ports.worker_slice("") == test_ports.worker_slice("gw0")


def test_the_tests_and_their_hubs_pick_from_halves_of_the_slice() -> None:
    low, high = test_ports.worker_slice()
    tests_low, tests_high = test_ports.TESTS_RANGE
    hubs_low, hubs_high = ports.parse(test_ports.HUB_RANGE)
    assert (tests_low, hubs_high) == (low, high)
    assert tests_high + 1 == hubs_low
    assert low <= test_ports.free_port() <= tests_high
