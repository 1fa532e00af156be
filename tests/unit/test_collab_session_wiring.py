"""Pure parts of the session wiring: who an update's origin names, the participants hook,
and the Origin check for cookie-authenticated room connections."""

from __future__ import annotations

from typing import Any

import pytest
from yarl import URL

from collab import access, execution, sessions
from hub.api import collab as collab_api
from hub.auth import collab_access


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        (access.Participant("user", "ada", can_write=True), execution.Participant("ada", "user")),
        (
            access.Participant("service", "bot", can_write=True),
            execution.Participant("bot", "service"),
        ),
        (access.Participant("user", "ro", can_write=False), None),  # read-only: never a writer
        (access.SYSTEM, None),  # the hub's own transactions
        ("user:ada", None),  # a server-side transaction's author label names nobody
        (execution.ORIGIN, None),
        (None, None),
    ],
)
def test_identify_names_the_connection_that_sent_an_update(origin: Any, expected: Any) -> None:
    assert sessions.identify(origin) == expected


class FakeSession:
    """Only what the hook calls (the Session itself is tested in tests/collab)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def participant_joined(self, key: str) -> None:
        self.calls.append(("joined", key))

    def participant_left(self, key: str) -> None:
        self.calls.append(("left", key))


class FakeConn:
    def __init__(self, conn_id: str) -> None:
        self.id = conn_id


class FakeRoom:
    def __init__(self) -> None:
        self.connections: dict[FakeConn, None] = {}


def test_the_participants_hook_reports_each_join_and_leave_once() -> None:
    session, room = FakeSession(), FakeRoom()
    bound = sessions.Bound(session, room, owner="ada")  # type: ignore[arg-type]
    a, b = FakeConn("a"), FakeConn("b")
    room.connections[a] = None
    bound.on_participants(room)  # type: ignore[arg-type]
    room.connections[b] = None
    bound.on_participants(room)  # type: ignore[arg-type]
    bound.on_participants(room)  # type: ignore[arg-type]  # nothing changed: nothing said
    del room.connections[a]
    bound.on_participants(room)  # type: ignore[arg-type]
    del room.connections[b]
    bound.on_participants(room)  # type: ignore[arg-type]
    assert session.calls == [("joined", "a"), ("joined", "b"), ("left", "a"), ("left", "b")]


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({"Host": "hub.example:8000", "Origin": "http://hub.example:8000"}, True),
        ({"Host": "hub.example:8000", "Origin": "https://HUB.example:8000"}, True),
        ({"Host": "hub.example:8000"}, True),  # no Origin: not a browser page
        ({"Host": "hub.example:8000", "Origin": "http://evil.example"}, False),
        ({"Host": "hub.example:8000", "Origin": "http://hub.example:9999"}, False),
        ({"Host": "hub.example:8000", "Origin": "null"}, False),  # sandboxed or file: pages
        ({"Origin": "http://hub.example:8000"}, False),  # no Host to compare with
    ],
)
def test_a_cookie_is_accepted_from_the_hubs_own_origin_only(
    headers: dict[str, str], allowed: bool
) -> None:
    assert collab_access.same_origin(headers) is allowed


@pytest.mark.parametrize(
    ("request_url", "public_url", "expected"),
    [
        ("http://127.0.0.1:8081/hub/api/collab/sessions", None, "ws://127.0.0.1:8081/collab/r"),
        ("https://hub.example.org/hub/api/collab/sessions", None, "wss://hub.example.org/collab/r"),
        # behind nginx the request reached the hub as http: public_url says what browsers use
        (
            "http://hub.example.org/hub/api/collab/sessions?x=1",
            "https://hub.example.org/",
            "wss://hub.example.org/collab/r",
        ),
        (
            "http://127.0.0.1:8081/hub/api/x",
            "http://127.0.0.1:8000/",
            "ws://127.0.0.1:8000/collab/r",
        ),
    ],
)
def test_a_sessions_room_url_follows_public_url(
    request_url: str, public_url: str | None, expected: str
) -> None:
    assert collab_api.room_url(URL(request_url), public_url, "r") == expected
