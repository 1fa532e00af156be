"""The hub's Prometheus metrics, served at ``/hub/metrics`` (``read:metrics``).

``prometheus_client`` keeps the figures and writes the text format; each figure is updated
where its event happens (the request middleware, the server manager, the push transaction,
the event store's append hook), which costs a dictionary lookup and an addition: nothing a
request would notice. Open rooms and the read cache's counts are read when the metrics are.

The figures live in a registry of the hub's own rather than the library's global one, so a
library that registers metrics of its own (jupyterhub does, on import) never clashes with
them; the process's own figures (CPU, memory, open files) are added to it.
"""

from __future__ import annotations

from collections.abc import Iterable

import prometheus_client
from prometheus_client import Counter, Gauge, Histogram

REGISTRY = prometheus_client.CollectorRegistry(auto_describe=True)
prometheus_client.ProcessCollector(registry=REGISTRY)
prometheus_client.PlatformCollector(registry=REGISTRY)

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST

REQUEST_DURATION = Histogram(
    "chronohub_request_duration_seconds",
    "HTTP requests to the hub by method, route and status: count and duration",
    ["method", "route", "status"],
    registry=REGISTRY,
)
SPAWNS = Counter(
    "chronohub_spawns",
    "Single-user server spawns by outcome (ready, failed_policy, failed_system)",
    ["outcome"],
    registry=REGISTRY,
)
SPAWN_DURATION = Histogram(
    "chronohub_spawn_duration_seconds",
    "Time from a spawn's start to its server answering, or to its failure, by outcome",
    ["outcome"],
    buckets=(0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 300, float("inf")),
    registry=REGISTRY,
)
EVENTS_APPENDED = Counter(
    "chronohub_events_appended",
    "Events appended to the log by this process, by type",
    ["type"],
    registry=REGISTRY,
)
GIT_PUSHES = Counter(
    "chronohub_git_pushes",
    "Pushes to projects that moved refs, by how they came (git, api, import)",
    ["via"],
    registry=REGISTRY,
)
COLLAB_ROOMS_OPEN = Gauge(
    "chronohub_collab_rooms_open",
    "Collaboration rooms open in this process",
    registry=REGISTRY,
)
# The read cache's own counts (hub/reads/cache.py), copied when the metrics are read.
READ_CACHE_LOOKUPS = Gauge(
    "chronohub_read_cache_lookups",
    "Lookups of this process's read cache (the users and groups lists' answers) since it"
    " started, by outcome (hit, miss)",
    ["outcome"],
    registry=REGISTRY,
)

# Known label values start at zero, so a rate over them is defined before the first one.
for _outcome in ("ready", "failed_policy", "failed_system"):
    SPAWNS.labels(_outcome)
    SPAWN_DURATION.labels(_outcome)
for _via in ("git", "api", "import"):
    GIT_PUSHES.labels(_via)


def count_appended(types: Iterable[str]) -> None:
    """The event store's append hook: count committed events by type."""
    for name in types:
        EVENTS_APPENDED.labels(name).inc()


def spawned(outcome: str, seconds: float) -> None:
    """Count one spawn that ended (``ready``, ``failed_policy``, ``failed_system``)."""
    SPAWNS.labels(outcome).inc()
    SPAWN_DURATION.labels(outcome).observe(seconds)


def render() -> bytes:
    """Every figure in Prometheus' text format."""
    return prometheus_client.generate_latest(REGISTRY)
