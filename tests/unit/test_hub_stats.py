"""The statistics of examples/hub-stats, folded from events shaped as the stream sends them
(including the login events the auth work adds: ``user.logged_in`` / ``user.logged_out``)."""

from __future__ import annotations

import importlib.util
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hub-stats" / "hub_stats.py"
T0 = datetime(2026, 11, 25, 9, 59, 58, tzinfo=UTC)


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hub_stats", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["hub_stats"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def event(type_: str, seconds: float, **data: Any) -> dict[str, Any]:
    at = (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")
    return {"type": type_, "time": at, "data": data}


def test_figures_from_servers_and_sessions() -> None:
    hub_stats = load()
    stats = hub_stats.Stats()
    later = (T0 + timedelta(hours=1)).isoformat()
    events = [
        event("server.spawn_requested", 0, user="ada", server_name=""),
        event("server.started", 1, user="ada", server_name=""),
        event("server.ready", 3.5, user="ada", server_name=""),  # 3.5 s, in the 09:00 hour
        event("server.spawn_requested", 5, user="bob", server_name="lab"),
        event("server.failed", 6, user="bob", server_name="lab", reason="x", kind="system"),
        event("server.spawn_requested", 7, user="bob", server_name="lab"),
        event("server.ready", 8.5, user="bob", server_name="lab"),  # 1.5 s, in the 10:00 hour
        event("user.logged_in", 9, name="cyd", session_id="s1", expires_at=later),
        event("user.logged_in", 9, name="dan", session_id="s2", expires_at=later),
        event("user.logged_in", 9, name="dan", session_id="s3", expires_at=later),
        event("user.logged_out", 10, name="dan", session_id="s2"),  # still has s3
        event("user.logged_in", 10, name="eve", session_id="s4", expires_at=T0.isoformat()),
        event("server.stop_requested", 11, user="ada", server_name=""),
        event("server.stopped", 12, user="ada", server_name=""),
    ]
    for number, item in enumerate(events, 1):
        assert stats.apply(f"9:{number}", item)
    assert not stats.apply("9:3", events[2])  # already counted: ignored
    figures = stats.figures(T0 + timedelta(minutes=5))
    assert figures == {
        "active_users": 3,
        "active_user_names": ["bob", "cyd", "dan"],  # eve's session has expired
        "logged_in_users": 2,
        "running_servers": 1,
        "spawns": 3,
        "spawns_per_hour": {"2026-11-25T09:00Z": 1, "2026-11-25T10:00Z": 2},
        "spawn_failures": 1,
        "median_spawn_seconds": 2.5,
        "events": len(events),
        "last_event_id": f"9:{len(events)}",
    }
    html = hub_stats.page(figures, T0 + timedelta(minutes=5))
    assert "<svg" in html
    assert "2.50 s" in html
