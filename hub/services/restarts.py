"""When a managed service that died is started again, and when the hub gives up on it.

Pure, no I/O: ``Restarts`` is told each death (with the loop time) and answers with the wait
before the next start, or that the service is crash-looping. JupyterHub restarts a dead
service at once, every time, forever (and a service that dies at the hub's start takes the
hub down); here the wait doubles from ``first_s`` up to ``max_s``, starts again from
``first_s`` once the service stayed up ``stable_s``, and ``deaths`` deaths within
``window_s`` mark it failed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Policy:
    """The restart settings (``service_restart_*``, ``service_stable_s``, ``service_crash_*``)."""

    first_s: float = 1.0
    max_s: float = 60.0
    stable_s: float = 60.0
    deaths: int = 5
    window_s: float = 300.0


@dataclass(frozen=True)
class Restart:
    """Start it again after ``delay_s``."""

    delay_s: float


@dataclass(frozen=True)
class GiveUp:
    """A crash loop: ``deaths`` deaths within ``window_s``."""

    deaths: int
    window_s: float

    @property
    def reason(self) -> str:
        """What the ``service.failed`` event and the API say."""
        return (
            f"crash loop: it died {self.deaths} times within {self.window_s:g} s; not restarted"
            " until the hub restarts"
        )


@dataclass
class Restarts:
    """One service's recent deaths and the wait before its next start."""

    policy: Policy
    _deaths: deque[float] = field(default_factory=deque)
    _next_delay: float | None = None

    def died(self, now: float, up_for: float) -> Restart | GiveUp:
        """Record a death at ``now`` of a start that had been up ``up_for`` seconds (0: it
        never got going)."""
        policy = self.policy
        if up_for >= policy.stable_s:  # it was healthy: a fresh start, not a loop
            self._deaths.clear()
            self._next_delay = None
        self._deaths.append(now)
        while self._deaths and now - self._deaths[0] > policy.window_s:
            self._deaths.popleft()
        if len(self._deaths) >= policy.deaths:
            return GiveUp(len(self._deaths), policy.window_s)
        delay = policy.first_s if self._next_delay is None else self._next_delay
        self._next_delay = min(delay * 2, policy.max_s)
        return Restart(min(delay, policy.max_s))
