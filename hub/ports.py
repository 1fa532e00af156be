"""Ports the hub hands out to what it starts: single-user servers, managed services whose URL
says port 0, and configurable-http-proxy's API.

The hub picks a port, and the process it starts binds it a moment later (JupyterHub's way). In
between, anything else may take it: with the kernel's choice (``port_range`` unset), any
process's outgoing connection, whose local port the kernel picks from the same ephemeral range
(``/proc/sys/net/ipv4/ip_local_port_range``). A ``port_range`` outside that range, which a
firewall may also open, leaves only other listeners, and those are skipped: a port is handed
out if it can be bound now. Either way, a port handed out recently is not handed out again
before its server had time to bind it, so two spawns at once never get the same one.
"""

from __future__ import annotations

import random
import re
import socket
import time
from collections.abc import Callable

# How long a port handed out is kept from being handed out again: its process binds it within
# its start timeout, which is usually seconds.
HOLD_S = 120.0

# Tries of the kernel's choice (port_range unset) before giving up on ports it repeats.
KERNEL_TRIES = 64

_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


class PortsExhausted(Exception):
    """No port can be handed out: every one of the range is taken or was handed out recently."""

    def __init__(self, ip: str, span: tuple[int, int] | None, held: int) -> None:
        self.ip, self.span, self.held = ip, span, held
        if span is None:
            message = (
                f"the kernel chose {KERNEL_TRIES} times on {ip} only ports handed out in the"
                f" last {HOLD_S:.0f} s ({held} of them)"
            )
        else:
            low, high = span
            message = (
                f"no port of port_range {low}-{high} is free on {ip}: of its {high - low + 1},"
                f" {held} were handed out in the last {HOLD_S:.0f} s and the others are taken;"
                " widen port_range (CHRONOHUB_PORT_RANGE)"
            )
        super().__init__(message)


def parse(text: str) -> tuple[int, int]:
    """``"LOW-HIGH"`` as ``(low, high)``, both within 1..65535 and low <= high; a
    ``ValueError`` that says what is wrong otherwise."""
    if not text.strip():
        raise ValueError(
            "port_range is empty: give LOW-HIGH (such as 20000-29999), or leave it unset for"
            " the kernel's choice"
        )
    found = _RANGE.match(text)
    if found is None:
        raise ValueError(
            f"port_range {text!r} is not LOW-HIGH (two port numbers and a dash, such as"
            " 20000-29999); leave it unset for the kernel's choice"
        )
    low, high = int(found[1]), int(found[2])
    for port in (low, high):
        if not 1 <= port <= 65535:
            raise ValueError(f"port_range {text!r}: {port} is not a port (1 to 65535)")
    if low > high:
        raise ValueError(f"port_range {text!r} is reversed: write {high}-{low}")
    return low, high


def listening_possible(ip: str, port: int) -> bool:
    """Whether a server could listen on ``ip:port`` now (nothing else has it)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((ip, port))
        except OSError:
            return False
    return True


class Ports:
    """Hands out ports nothing listens on, from ``span`` (``(low, high)``, both included) or,
    when it is None, the kernel's choice; one per hub process, shared by all that start
    processes, so that what one handed out the other does not."""

    def __init__(
        self,
        span: tuple[int, int] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.span = span
        self._clock = clock
        self._handed: dict[int, float] = {}  # port -> when handed out
        # Where the next search begins: a random place, so that two processes picking from
        # one range do not begin at the same port, then onwards from the last one handed out.
        self._next = random.randint(*span) if span else 0  # noqa: S311 - not a secret

    @classmethod
    def from_setting(cls, port_range: str | None) -> Ports:
        """The picker for the ``port_range`` setting (None: the kernel's choice)."""
        return cls(None if port_range is None else parse(port_range))

    def pick(self, ip: str) -> int:
        """A port nothing listens on at ``ip`` now and not handed out recently; it stays
        reserved for ``HOLD_S`` seconds. ``PortsExhausted`` when there is none."""
        now = self._clock()
        self._handed = {p: t for p, t in self._handed.items() if now - t < HOLD_S}
        port = self._kernel_choice(ip) if self.span is None else self._from_span(ip, self.span)
        self._handed[port] = now
        return port

    def _from_span(self, ip: str, span: tuple[int, int]) -> int:
        low, high = span
        size = high - low + 1
        for step in range(size):
            port = low + (self._next - low + step) % size
            if port not in self._handed and listening_possible(ip, port):
                self._next = low + (port - low + 1) % size
                return port
        raise PortsExhausted(ip, span, len(self._handed))

    def _kernel_choice(self, ip: str) -> int:
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        for _ in range(KERNEL_TRIES):
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.bind((ip, 0))
                port: int = sock.getsockname()[1]
            if port not in self._handed:
                return port
        raise PortsExhausted(ip, None, len(self._handed))
