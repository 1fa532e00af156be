"""`events export` lines are built by PostgreSQL: byte for byte what the Python reference
(`export_format.export_line`) writes, for awkward payloads too, and import reads them back."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest

from events import models, store
from events.catalog import groups as group_events
from events.catalog import servers as server_events
from events.catalog import tokens as token_events
from events.catalog import users as user_events
from hub.audit import export_format
from hub.cli import events as events_cli

pytestmark = pytest.mark.integration

AWKWARD = 'quote " backslash \\ tab \t newline \n nul-ish \x01 del \x7f, colon: é ✓ 😀 \u2028'


async def reference(event_store: store.EventStore) -> bytes:
    """The whole log written by the Python path, page by page."""
    lines: list[str] = []
    async for page in event_store.pages(page_size=1000):
        lines += [export_format.export_line(event) for event in page]
    return "".join(lines).encode()


async def append_awkward_events(event_store: store.EventStore) -> None:
    meta = models.Metadata(
        actor=models.Actor(kind="user", name='ann é "q"'),
        request_id=AWKWARD,
        correlation_id=uuid4(),
        client_address="::1",
    )
    uid = uuid4()
    await event_store.append(
        user_events.stream_id(uid),
        [user_events.UserCreated(user_id=uid, name="zoë✓", admin=True)],
        metadata=meta,
    )
    gid = uuid4()
    await event_store.append(
        group_events.stream_id(gid),
        [
            # free-form payloads: strings only, then numbers (the Python path writes those)
            group_events.GroupCreated(
                group_id=gid,
                name="g",
                properties={"text": AWKWARD, "nested": {"b": ["x, y", "a: b"], "a": {}}},
            ),
            group_events.GroupMembersAdded(group_id=gid, user_ids=[uid], users=["zoë✓"]),
            group_events.GroupPropertiesSet(
                group_id=gid, properties={"quota": 5, "ratio": 0.1, "tiny": 1.5e-7, "big": 1e22}
            ),
        ],
    )
    for i, expires in enumerate(
        [
            None,
            datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
            datetime(2030, 1, 2, 3, 4, 5, 120000, tzinfo=UTC),
        ]
    ):
        await event_store.append(
            token_events.stream_id(f"t{i}"),
            [
                token_events.TokenIssued(
                    token_id=f"t{i}",
                    user_id=uid,
                    owner_name="zoë✓",
                    scopes=["read:users!user=zoë✓", "tokens"],
                    note=AWKWARD,
                    expires_at=expires,
                )
            ],
        )
    await event_store.append(
        server_events.stream_id(uid),
        [
            server_events.ServerSpawnRequested(user_id=uid, user="zoë✓", options={"image": "x"}),
            server_events.ServerStarted(user_id=uid, user="zoë✓", pid=4242, url="http://h:1/"),
            server_events.ServerFailed(user_id=uid, user="zoë✓", reason=AWKWARD, kind="policy"),
        ],
    )


async def test_sql_lines_equal_the_python_reference(
    event_store: store.EventStore, tmp_path: Path
) -> None:
    await append_awkward_events(event_store)
    exported = tmp_path / "events.jsonl"
    assert await events_cli.export(event_store, exported) == 0
    assert exported.read_bytes() == await reference(event_store)
    # PostgreSQL built every line but two: the free-form payloads (the spawn's options with
    # numbers in them; server.started's spawner_state, a JupyterHub spawner's get_state()).
    shapes = export_format.ExportShapes.of(event_store.registry)
    page = await event_store.pool.fetch(
        export_format.queries["export_page"], "0", 0, 100, shapes.keys, shapes.free_form, None, None
    )
    assert len(page) == 10
    assert [row["line"] is None for row in page].count(True) == 2


async def test_whole_seconds_and_trailing_zeros_in_recorded_at(
    event_store: store.EventStore, tmp_path: Path
) -> None:
    """Times as Python's isoformat writes them: no fraction at a whole second, six digits."""
    source = tmp_path / "in.jsonl"
    lines = []
    for i, at in enumerate(["2026-01-02T03:04:05+00:00", "2026-01-02T03:04:05.120000+00:00"]):
        uid = uuid4()
        lines.append(
            json.dumps(
                {
                    "event_id": str(uuid4()),
                    "stream": f"user-{uid}",
                    "version": 1,
                    "type": "user.created",
                    "schema_version": 1,
                    "data": {"user_id": str(uid), "name": f"u{i}", "admin": False},
                    "metadata": {"actor": {"kind": "system", "name": "chronohub"}},
                    "recorded_at": at,
                }
            )
        )
    source.write_text("\n".join(lines) + "\n")
    assert await events_cli.import_file(event_store, source) == 0
    exported = tmp_path / "out.jsonl"
    assert await events_cli.export(event_store, exported) == 0
    text = exported.read_bytes()
    assert text == await reference(event_store)
    times = [json.loads(line)["time"] for line in text.splitlines()]
    assert times == ["2026-01-02T03:04:05Z", "2026-01-02T03:04:05.120000Z"]


async def test_pages_and_resume(event_store: store.EventStore, tmp_path: Path) -> None:
    """Several export pages, one of them written by Python, resumed from a line."""
    await append_awkward_events(event_store)
    uid = uuid4()
    await event_store.append(
        user_events.stream_id(uid),
        [
            user_events.UserCreated(user_id=uid, name="many"),
            *(
                user_events.UserAdminChanged(user_id=uid, admin=i % 2 == 0)
                for i in range(export_format.EXPORT_PAGE + 20)
            ),
        ],
    )
    whole = tmp_path / "all.jsonl"
    assert await events_cli.export(event_store, whole) == 0
    text = whole.read_bytes()
    assert text == await reference(event_store)
    lines = text.splitlines(keepends=True)
    assert len(lines) > export_format.EXPORT_PAGE
    k = export_format.EXPORT_PAGE + 3
    rest = tmp_path / "rest.jsonl"
    after = models.Checkpoint.parse(json.loads(lines[k - 1])["id"])
    assert await events_cli.export(event_store, rest, after=after) == 0
    assert rest.read_bytes() == b"".join(lines[k:])
