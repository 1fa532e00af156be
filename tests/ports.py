"""Ports for the test run: each pytest-xdist worker picks from a slice of its own of a range
outside the kernel's ephemeral range, and so do the hubs it starts (``port_range``).

A test picks a port it then gives to a server it starts, as the hub does for what it spawns.
With the kernel's choice (``bind(0)``) that port lies in the ephemeral range, where the other
worker's next outgoing connection, or the ports the other worker picks the same way, can take it
before the server binds it. Here a worker's picks never leave its slice: the first half for the
tests' own picks (``free_port``), the second for the hubs they start (``HUB_RANGE``, which
``conftest.py`` sets as ``CHRONOHUB_PORT_RANGE`` and ``tests.helpers.hub_process_env`` passes
on), so that a hub and its test never hand out the same port either.
"""

from __future__ import annotations

import os
import re

from hub import ports as hub_ports

# Below the ephemeral range of Linux's default (32768-60999) and of the IANA one (49152-65535),
# above the usual well-known and registered services' ports (PostgreSQL's 5432, 8000, 8080...).
FIRST, LAST = 12000, 31999
SLICE = 1000  # ports of one worker: 20 slices, used again from the 21st worker on

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1... ("" without -n)


def worker_index(worker: str = WORKER) -> int:
    """0 for gw0 (and a run without xdist), 1 for gw1..."""
    found = re.fullmatch(r"gw(\d+)", worker)
    return int(found[1]) if found else 0


def worker_slice(worker: str = WORKER) -> tuple[int, int]:
    """The worker's ports: ``(low, high)``, both included."""
    slices = (LAST - FIRST + 1) // SLICE
    low = FIRST + (worker_index(worker) % slices) * SLICE
    return low, low + SLICE - 1


_LOW, _HIGH = worker_slice()
_HALF = SLICE // 2
TESTS_RANGE = (_LOW, _LOW + _HALF - 1)
# What the hubs the tests start hand out (``port_range``, ``CHRONOHUB_PORT_RANGE``)
HUB_RANGE = f"{_LOW + _HALF}-{_HIGH}"

# The tests' one picker, for what takes a ``Ports`` (a proxy a test starts itself, say)
PICKER = hub_ports.Ports(TESTS_RANGE)


def free_port(ip: str = "127.0.0.1") -> int:
    """A port of this worker's slice nothing listens on at ``ip``, not handed out recently."""
    return PICKER.pick(ip)
