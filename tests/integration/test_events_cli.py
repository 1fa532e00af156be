"""The event-log commands: `chronohub events tail|follow|export|import|stats` and `state`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import pytest

from events import models, store
from events.catalog import groups as group_events
from events.catalog import servers as server_events
from events.catalog import tokens as token_events
from events.catalog import users as user_events
from hub import database
from hub.audit import export_format
from hub.cli import events as events_cli
from projections import catalog
from tests.integration.api_fixtures import Api
from tests.integration.test_projections import create_user
from tests.integration.test_workflow import run_workflow

pytestmark = pytest.mark.integration

# Every column an import must restore (the position and transaction id are re-assigned).
EVENT_ROWS = """
SELECT stream_id, stream_version, event_id, event_type, schema_version, data::text,
       metadata::text, actor, recorded_at
  FROM events ORDER BY tx_id, global_position
"""


async def cli(db_url: str, *args: str) -> tuple[int, str]:
    """Run ``chronohub`` on ``db_url``; exit status and stdout and stderr together."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", *args,
        env={**os.environ, "CHRONOHUB_DATABASE_URL": db_url, "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def rows(db_url: str, query: str) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(db_url)
    try:
        return [tuple(r) for r in await conn.fetch(query)]
    finally:
        await conn.close()


def table_rows(out: str) -> list[list[str]]:
    """The cells of the body rows of the rich tables in ``out``."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in out.splitlines()
        if line.strip().startswith("│")
    ]


async def test_export_then_import_restores_the_log_and_the_read_models(
    api: Api, db_url: str, empty_db_url: str, tmp_path: Path
) -> None:
    secrets = await run_workflow(api)
    exported = tmp_path / "events.jsonl"
    code, out = await cli(db_url, "events", "export", "-o", str(exported))
    assert code == 0, out
    text = exported.read_text()
    lines = text.splitlines()
    source = await rows(db_url, EVENT_ROWS)
    assert len(lines) == len(source)
    head = await rows(db_url, "SELECT tx_id::text || ':' || global_position FROM events"
                      " ORDER BY tx_id DESC, global_position DESC LIMIT 1")  # fmt: skip
    assert f"exported {len(lines)} events; last checkpoint {head[0][0]}" in out
    first = json.loads(lines[0])
    assert {"id", "position", "type", "stream", "version", "time", "actor", "data"} <= set(first)
    assert {"event_id", "schema_version", "recorded_at", "metadata"} <= set(first)
    for secret in secrets:
        assert secret not in text
    for generated in secrets[2:]:
        assert generated[:8] not in text

    await database.migrate(empty_db_url)
    code, out = await cli(empty_db_url, "events", "import", str(exported))
    assert code == 0, out
    assert f"imported {len(lines)} events" in out
    assert await rows(empty_db_url, EVENT_ROWS) == source
    for query in (
        "SELECT user_id, name, admin, created, updated FROM users ORDER BY user_id",
        "SELECT name, properties::text, created FROM groups ORDER BY name",
        "SELECT group_id, user_id FROM group_members ORDER BY 1, 2",
        "SELECT token_id, user_id, service, scopes, note, expires_at, created FROM tokens"
        " ORDER BY token_id",
        "SELECT role, principal_kind, principal FROM role_grants ORDER BY 1, 2, 3",
    ):
        assert await rows(empty_db_url, query) == await rows(db_url, query), query
    code, out = await cli(empty_db_url, "projections", "verify")
    assert code == 0, out
    assert out.count(": identical") == len(catalog.ALL)  # every projection

    # Into a log that is not empty: refused, nothing written.
    code, out = await cli(empty_db_url, "events", "import", str(exported))
    assert code == 1
    assert "event log of this database is not empty" in out
    assert len(await rows(empty_db_url, EVENT_ROWS)) == len(source)

    # Resumable: after the id of line k come exactly the lines after k.
    k = len(lines) // 2
    rest = tmp_path / "rest.jsonl"
    resume = json.loads(lines[k - 1])["id"]
    code, out = await cli(db_url, "events", "export", "--after", resume, "-o", str(rest))
    assert code == 0, out
    assert rest.read_text().splitlines() == lines[k:]
    code, out = await cli(db_url, "events", "export", "--after", "last")
    assert code == 2
    assert "is not of the form '<tx>:<position>'" in out


async def test_a_bad_line_is_refused_by_number_and_nothing_is_written(
    db_url: str, empty_db_url: str, tmp_path: Path
) -> None:
    await database.migrate(empty_db_url)
    lines = [json.dumps(valid_line(f"u{i}")) for i in range(export_format.IMPORT_BATCH + 10)]
    lines.insert(export_format.IMPORT_BATCH + 5, '{"event_id": ')  # after the first batch went in
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, out = await cli(empty_db_url, "events", "import", str(path))
    assert code == 1, out
    assert f"line {export_format.IMPORT_BATCH + 6}: Invalid JSON" in out
    assert await rows(empty_db_url, "SELECT count(*) FROM events") == [(0,)]
    assert await rows(empty_db_url, "SELECT count(*) FROM users") == [(0,)]


# Fixed, not drawn: it is part of a test id, which every pytest-xdist worker must collect alike.
FIRST_ID = "6f1c2a9e-3b7d-4c55-9e0a-1d2f3a4b5c6d"


def valid_line(name: str, **changes: Any) -> dict[str, Any]:
    user_id = uuid4()
    line = {
        "event_id": str(uuid4()),
        "stream": f"user-{user_id}",
        "version": 1,
        "type": "user.created",
        "schema_version": 1,
        "data": {"user_id": str(user_id), "name": name, "admin": False},
        "metadata": {"actor": {"kind": "user", "name": "ann"}, "request_id": "r1"},
        "recorded_at": "2026-01-02T03:04:05.123456+00:00",
    }
    return {**line, **changes}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("not json", "line 2: Invalid JSON"),
        (json.dumps({k: v for k, v in valid_line("b").items() if k != "event_id"}),
         "line 2: event_id: Field required"),
        (json.dumps(valid_line("b", type="user.vanished")), "line 2: unknown event type"),
        (json.dumps(valid_line("b", data={"name": "b"})), "line 2: stored user.created event"),
        (json.dumps(valid_line("b", stream="no stream")), "line 2: 'no stream' is not a stream"),
        (json.dumps(valid_line("b", version=2)), "line 2: stream 'user-"),
        (json.dumps(valid_line("b", recorded_at="2026-01-02T03:04:05")),
         "line 2: recorded_at: Input should have timezone info"),
        (json.dumps(valid_line("b", event_id=FIRST_ID)),
         f"lines 1-2: Key (event_id)=({FIRST_ID}) already exists"),
    ],
)  # fmt: skip
async def test_import_validates_every_line(
    event_store: store.EventStore,
    pool: asyncpg.Pool[Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    bad: str,
    message: str,
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(valid_line("a", event_id=FIRST_ID)) + "\n" + bad + "\n")
    assert await events_cli.import_file(event_store, path) == 1
    assert message in capsys.readouterr().err
    assert await pool.fetchval("SELECT count(*) FROM events") == 0


async def test_tail_shows_the_last_events_oldest_first_with_filters(
    event_store: store.EventStore, db_url: str
) -> None:
    for i in range(5):
        await create_user(event_store, f"u{i}")
    code, out = await cli(db_url, "events", "tail", "-n", "3")
    assert code == 0, out
    body = table_rows(out)
    assert [row[2] for row in body] == ["user.created"] * 3
    assert [re.search(r"name=(\w+)", row[5])[1] for row in body] == ["u2", "u3", "u4"]
    assert [row[4] for row in body] == ["system:chronohub"] * 3

    code, out = await cli(db_url, "events", "tail", "--type", "user.created", "--user", "u1")
    assert code == 0, out
    assert [row[5].split()[1] for row in table_rows(out)] == ["name=u1"]
    code, out = await cli(db_url, "events", "tail", "--user", "nobody")
    assert code == 1
    assert "no user or group named nobody" in out


async def test_stats_count_by_type_and_day(api: Api, db_url: str) -> None:
    await run_workflow(api)
    code, out = await cli(db_url, "events", "stats", "--by", "type")
    assert code == 0, out
    shown = {row[0]: int(row[1].replace(",", "")) for row in table_rows(out)}
    counted = await rows(db_url, "SELECT event_type, count(*) FROM events GROUP BY 1")
    assert shown == dict(counted)

    code, out = await cli(db_url, "events", "stats")
    assert code == 0, out
    days = await rows(db_url, "SELECT (recorded_at AT TIME ZONE 'UTC')::date::text, count(*)"
                      " FROM events GROUP BY 1")  # fmt: skip
    assert [row[:2] for row in table_rows(out) if re.fullmatch(r"\d{4}-\d\d-\d\d", row[0])] == [
        [day, str(count)] for day, count in days
    ]
    assert "events by type" in out
    assert f"{sum(shown.values())} events in all" in out


@dataclass(frozen=True)
class History:
    """A small log: alice created (``position``, ``at_time``), the group ``team`` with her as
    a member, alice renamed bob, carol created, and a token of bob's (``last``)."""

    position: str
    at_time: str
    last: str


@pytest.fixture
async def history(event_store: store.EventStore) -> History:
    alice = uuid4()
    created = await event_store.append(
        user_events.stream_id(alice), [user_events.UserCreated(user_id=alice, name="alice")]
    )
    group = uuid4()
    await event_store.append(
        group_events.stream_id(group),
        [
            group_events.GroupCreated(group_id=group, name="team"),
            group_events.GroupMembersAdded(group_id=group, user_ids=[alice], users=["alice"]),
        ],
    )
    await event_store.append(
        user_events.stream_id(alice),
        [user_events.UserRenamed(user_id=alice, old_name="alice", name="bob")],
    )
    await create_user(event_store, "carol")
    last = await event_store.append(
        token_events.stream_id("t1"),
        [
            token_events.TokenIssued(
                token_id="t1", user_id=alice, owner_name="bob", scopes=["read:users"]
            )
        ],
    )
    return History(
        position=str(created.positions[0]),
        at_time=created.events[0].recorded_at.isoformat(),
        last=str(last.positions[0]),
    )


SCRATCH = "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'state%'"


@pytest.mark.parametrize("by", ["position", "at_time"])
async def test_state_at_a_position_or_a_time_shows_the_users_then(
    history: History, db_url: str, pool: asyncpg.Pool[Any], by: str
) -> None:
    code, out = await cli(db_url, "state", "--at", getattr(history, by))
    assert code == 0, out
    assert [row[:2] for row in table_rows(out)] == [["alice", "no"]]
    assert f"users as of position {history.position}" in out
    assert await pool.fetchval(SCRATCH) == 0  # its scratch schema is gone


async def test_state_at_shows_groups_and_tokens_as_they_were(history: History, db_url: str) -> None:
    code, out = await cli(db_url, "state", "--at", history.position, "groups")
    assert code == 0, out
    assert table_rows(out) == []  # the group came after
    code, out = await cli(db_url, "state", "--at", history.last, "groups")
    assert code == 0, out
    assert table_rows(out) == [["team", "bob"]]
    code, out = await cli(db_url, "state", "--at", history.last, "tokens")
    assert code == 0, out
    assert table_rows(out) == [["t1", "bob", "read:users", "never"]]


async def test_state_before_the_first_event_is_empty(history: History, db_url: str) -> None:
    code, out = await cli(db_url, "state", "--at", "2000-01-01T00:00:00Z")
    assert code == 0, out
    assert "before the first event" in out
    assert table_rows(out) == []


@pytest.mark.parametrize(
    ("at", "code", "message"),
    [
        ("yesterday", 2, "neither a position"),
        ("2026-01-01T00:00:00", 2, "has no time zone"),
        ("999999", 1, "position 999999 is past the end of the log (its last event is at"),
        ("0", 1, "no event at position 0: positions start at 1"),
    ],
)
async def test_state_at_refuses_what_is_not_a_point_of_the_log(
    history: History, db_url: str, pool: asyncpg.Pool[Any], at: str, code: int, message: str
) -> None:
    status, out = await cli(db_url, "state", "--at", at)
    assert status == code, out
    assert message in out
    assert await pool.fetchval(SCRATCH) == 0


async def test_state_shows_servers_as_they_were(event_store: store.EventStore, db_url: str) -> None:
    dana = uuid4()
    await event_store.append(
        user_events.stream_id(dana), [user_events.UserCreated(user_id=dana, name="dana")]
    )
    ids = {"user_id": dana, "user": "dana", "server_name": ""}
    url = "http://127.0.0.1:41234/user/dana/"
    running = await event_store.append(
        server_events.stream_id(dana),
        [
            server_events.ServerSpawnRequested(**ids),
            server_events.ServerStarted(**ids, pid=4242, url=url),
            server_events.ServerReady(**ids, url=url),
        ],
    )
    stopped = await event_store.append(
        server_events.stream_id(dana),
        [server_events.ServerStopRequested(**ids), server_events.ServerStopped(**ids)],
    )

    code, out = await cli(db_url, "state", "--at", str(running.positions[-1]), "servers")
    assert code == 0, out
    [row] = table_rows(out)
    assert row[:4] == ["dana", "", "ready", url]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row[4])
    code, out = await cli(db_url, "state", "--at", str(stopped.positions[-1]), "servers")
    assert code == 0, out
    assert [r[:3] for r in table_rows(out)] == [["dana", "", "stopped"]]
    code, out = await cli(db_url, "state", "--at", str(running.positions[0] - 1), "servers")
    assert code == 0, out
    assert table_rows(out) == []


async def test_follow_prints_new_events_until_a_signal(
    event_store: store.EventStore, db_url: str
) -> None:
    await create_user(event_store, "before")
    for sig, extra in ((signal.SIGTERM, ["--json"]), (signal.SIGINT, [])):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hub.cli", "events", "follow", "--type", "user.created", *extra,
            env={**os.environ, "CHRONOHUB_DATABASE_URL": db_url},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        assert proc.stderr is not None
        try:
            started = await asyncio.wait_for(proc.stderr.readline(), 30)
            assert b"following events after" in started
            user_id = await create_user(event_store, f"new-{sig.name}")
            await event_store.append(
                user_events.stream_id(user_id),
                [user_events.UserAdminChanged(user_id=user_id, admin=True)],
            )
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            if extra:
                event = json.loads(line)
                assert (event["type"], event["data"]["name"]) == ("user.created", "new-SIGTERM")
            else:
                assert "user.created" in line
                assert "name=new-SIGINT" in line
        finally:
            proc.send_signal(sig)
            rest, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        assert rest == b""  # the admin change was filtered out, the old user not replayed
        assert b"resume with --after" in err


def test_arguments() -> None:
    assert events_cli.at_argument("42") == 42
    assert events_cli.at_argument("2026-01-02T03:04:05Z").tzinfo is not None
    assert events_cli.checkpoint_argument("7:9") == models.Checkpoint(7, 9)
