"""The statistics of examples/hub-stats, folded from events shaped as the stream sends them
(including the login events the auth work adds: ``user.logged_in`` / ``user.logged_out``)."""

from __future__ import annotations

import importlib.util
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

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
    now = T0 + timedelta(minutes=5)
    figures = stats.figures(now)
    chart = figures.pop("chart")
    assert figures == {
        "period": "24h",
        "since": "2026-11-24T10:04:58Z",
        "until": "2026-11-25T10:04:58Z",
        "active_users": 5,  # ada and eve too: active in the period, though not now
        "active_users_now": 3,  # bob's server, cyd's and dan's sessions (eve's expired)
        "logged_in_users": 2,
        "running_servers": 1,
        "spawns": 3,
        "spawn_failures": 1,
        "median_spawn_seconds": 2.5,  # 3.5 s and 1.5 s; the failed one is not a duration
        "max_spawn_seconds": 3.5,
        "logins": 4,
        "pushes": 0,
        "commits_pushed": 0,
        "collab_sessions": 0,
        "collab_joins": 0,
        "executions": 0,
        "events": len(events),
        "last_event_id": f"9:{len(events)}",
    }
    assert len(chart["buckets"]) == 24
    assert chart["series"]["spawns"][-1] == 3  # all in the last hour of the day
    assert sum(chart["series"]["logins"]) == 4
    html = hub_stats.page(stats.figures(now))
    assert "<svg" in html
    assert "2.50 s" in html
    assert "ada" not in html  # aggregate-only
    assert "http-equiv='refresh'" in html  # without the hub's script: reloads itself
    assert "<script" not in html.replace('<script type="application/json" id="chart-data">', "")

    # With the hub's chart script: linked, and the timed reload only for browsers without it.
    scripted = hub_stats.page(stats.figures(now), "/hub/static/app/stats-ABC.js")
    assert '<script type="module" src="/hub/static/app/stats-ABC.js"></script>' in scripted
    assert "<noscript><meta http-equiv='refresh' content='30'></noscript>" in scripted


def test_the_charts_data_block_cannot_end_its_script_element() -> None:
    hub_stats = load()
    figures = {
        "since": "</script><script>alert(1)</script>",
        "until": "x",
        "chart": {"buckets": [], "series": {}},
    }
    block = hub_stats.data_block(figures)
    assert "<" not in block
    assert "\\u003c/script>" in block


@pytest.mark.parametrize(
    ("api_url", "prefix", "manifest"),
    [
        ("http://127.0.0.1:8081/hub/api", "/hub/static/app/",
         "http://127.0.0.1:8081/hub/static/app/manifest.json"),
        ("http://10.0.0.2:8081/base/hub/api/", "/base/hub/static/app/",
         "http://10.0.0.2:8081/base/hub/static/app/manifest.json"),
    ],
)  # fmt: skip
def test_the_chart_script_is_looked_up_under_the_hubs_own_base_url(
    api_url: str, prefix: str, manifest: str
) -> None:
    script = load().ChartScript(api_url)
    assert (script.prefix, script.manifest_url) == (prefix, manifest)


def test_a_period_counts_only_what_happened_in_it() -> None:
    hub_stats = load()
    stats = hub_stats.Stats()
    events = [
        event("user.logged_in", -3 * 3600, name="ada", session_id="s1", expires_at=None),
        event("project.pushed", -2 * 3600, pusher="ada", commits=3, project_id="p", refs=[]),
        event("collab_session.created", -600, created_by="bob", room="r", kernel_name="k"),
        event("collab.participant_joined", -590, participant="user:bob", room="r",
              connection="c", access="write"),
        event("collab.participant_joined", -580, participant="service:bot", room="r",
              connection="d", access="read"),
        event("collab_session.execution_requested", -570, requester="bob", request_id="x",
              cell_id="c1", via="rest"),
        event("project.pushed", -60, pusher="cyd", commits=1, project_id="p", refs=[]),
    ]  # fmt: skip
    for number, item in enumerate(events, 1):
        assert stats.apply(f"9:{number}", item)
    hour = stats.figures(T0, "1h")
    assert (hour["pushes"], hour["commits_pushed"], hour["logins"]) == (1, 1, 0)
    assert (hour["collab_sessions"], hour["collab_joins"], hour["executions"]) == (1, 1, 1)
    assert hour["active_users"] == 3  # bob, cyd, and ada logged in (no expiry) now
    day = stats.figures(T0, "24h")
    assert (day["pushes"], day["commits_pushed"], day["logins"]) == (2, 4, 1)
    assert sum(day["chart"]["series"]["pushes"]) == 2
    with pytest.raises(hub_stats.BadPeriod, match="period must be one of 1h, 6h, 24h, 7d, 30d"):
        hub_stats.period_of("2w")
