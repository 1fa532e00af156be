"""The event store against real PostgreSQL: appends, conflicts, idempotency, bad input, reads."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

import asyncpg
import pytest

from events import errors, models, store
from events.catalog import users as user_events
from tests.helpers import Counted, Noted

pytestmark = pytest.mark.integration


async def count_events(pool: asyncpg.Pool[Any]) -> int:
    return await pool.fetchval("SELECT count(*) FROM events")


async def test_append_and_read_stream(event_store: store.EventStore) -> None:
    actor = models.Metadata(actor=models.Actor(kind="user", name="alice"), request_id="r-1")
    first = await event_store.append(
        "note-a", [Noted(text="one"), Noted(text="two")], expected=store.NO_STREAM, metadata=actor
    )
    assert first.version == 2
    second = await event_store.append("note-a", [Noted(text="three")], expected=2)
    assert second.version == 3
    assert second.positions[0] > first.positions[-1]

    stored = await event_store.read_stream("note-a")
    assert [e.stream_version for e in stored] == [1, 2, 3]
    assert [e.data for e in stored] == [Noted(text="one"), Noted(text="two"), Noted(text="three")]
    assert stored[0].metadata.actor.label == "user:alice"
    assert stored[0].metadata.request_id == "r-1"
    assert stored[2].metadata.actor == models.SYSTEM
    assert [e.position for e in stored] == [*first.positions, *second.positions]
    assert await event_store.stream_version("note-a") == 3
    assert await event_store.stream_version("note-missing") == 0
    assert await event_store.read_stream("note-a", from_version=3) == stored[2:]


async def test_expected_version_rules(event_store: store.EventStore) -> None:
    await event_store.append("note-b", [Noted(text="x")], expected=store.NO_STREAM)
    with pytest.raises(errors.ConcurrencyConflict) as exists:
        await event_store.append("note-b", [Noted(text="y")], expected=store.NO_STREAM)
    assert (exists.value.expected, exists.value.actual) == (0, 1)
    assert "is at version 1" in str(exists.value)

    with pytest.raises(errors.ConcurrencyConflict) as ahead:
        await event_store.append("note-b", [Noted(text="y")], expected=7)
    assert ahead.value.actual == 1  # no hole was left at versions 2..7

    with pytest.raises(errors.ConcurrencyConflict) as missing:
        await event_store.append("note-nothing", [Noted(text="y")], expected=1)
    assert missing.value.actual == 0

    result = await event_store.append("note-b", [Noted(text="any")], expected=store.ANY)
    assert result.version == 2
    created = await event_store.append("note-new", [Noted(text="any")], expected=store.ANY)
    assert created.version == 1
    assert [e.stream_version for e in await event_store.read_stream("note-b")] == [1, 2]


async def test_concurrent_appends_at_the_same_version_one_wins(
    event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    await event_store.append("note-race", [Noted(text="start")], expected=store.NO_STREAM)
    contenders = 8

    async def contend(i: int) -> store.AppendResult:
        return await event_store.append(
            "note-race", [Noted(text=f"w{i}-a"), Noted(text=f"w{i}-b")], expected=1
        )

    outcomes = await asyncio.gather(
        *(contend(i) for i in range(contenders)), return_exceptions=True
    )
    winners = [o for o in outcomes if isinstance(o, store.AppendResult)]
    conflicts = [o for o in outcomes if isinstance(o, errors.ConcurrencyConflict)]
    assert len(winners) == 1
    assert len(conflicts) == contenders - 1
    assert all(c.actual == 3 for c in conflicts)
    stored = await event_store.read_stream("note-race")
    texts = [e.data.text for e in stored]  # type: ignore[attr-defined]
    winner = texts[1].split("-")[0]
    assert texts == ["start", f"{winner}-a", f"{winner}-b"]  # nothing half-written
    assert await count_events(pool) == 3


async def test_idempotent_retry_returns_the_original_positions(
    event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    ids = [uuid4(), uuid4()]
    events = [Noted(text="a"), Noted(text="b")]
    first = await event_store.append("note-idem", events, expected=store.NO_STREAM, event_ids=ids)
    # A retry after a lost reply: same ids, same expectation that no longer holds.
    again = await event_store.append("note-idem", events, expected=store.NO_STREAM, event_ids=ids)
    assert again.positions == first.positions
    assert again.version == first.version
    assert again.checkpoint == first.checkpoint
    # A retry with expected=ANY hits the unique event id instead: same answer.
    any_again = await event_store.append("note-idem", events, expected=store.ANY, event_ids=ids)
    assert any_again.positions == first.positions
    assert await count_events(pool) == 2

    with pytest.raises(errors.IdempotencyConflict):
        await event_store.append("note-other", events, event_ids=ids)
    with pytest.raises(errors.IdempotencyConflict):
        await event_store.append("note-idem", events, event_ids=[ids[0], uuid4()])
    assert await count_events(pool) == 2


class _Unregistered(Noted):
    """Same shape as Noted but a type name no registry of the store knows."""


@pytest.mark.parametrize(
    ("stream_id", "build", "error", "message"),
    [
        ("note-x", lambda: [], errors.InvalidEvent, "at least one event"),
        ("Note x", lambda: [Noted(text="a")], errors.InvalidEvent, "stream id"),
        ("note-x", lambda: [{"text": "a"}], errors.InvalidEvent, "not an event model"),
        (
            "note-x",
            lambda: [Noted.model_construct(text=12345)],
            errors.InvalidEvent,
            "payload is invalid",
        ),
        ("note-x", lambda: [Noted(text="x" * 70_000)], errors.PayloadTooLarge, "over the limit"),
    ],
)
async def test_malformed_input_is_refused_and_writes_nothing(
    event_store: store.EventStore,
    pool: asyncpg.Pool[Any],
    stream_id: str,
    build: Any,
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        await event_store.append(stream_id, build())
    assert await count_events(pool) == 0


async def test_unknown_event_type_is_refused(pool: asyncpg.Pool[Any]) -> None:
    narrow = models.Registry()  # a store whose registry lacks test.noted
    unknown_store = store.EventStore(pool, registry=narrow)
    with pytest.raises(errors.UnknownEventType, match=r"test\.noted"):
        await unknown_store.append("note-x", [Noted(text="a")])
    assert await count_events(pool) == 0


async def test_bad_expected_version_is_refused(event_store: store.EventStore) -> None:
    with pytest.raises(errors.InvalidEvent, match="expected version"):
        await event_store.append("note-x", [Noted(text="a")], expected=-5)


async def test_reading_an_unknown_stored_type_names_it(
    event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    await pool.execute(
        "INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version,"
        " data, metadata, actor) VALUES ('note-z', 1, gen_random_uuid(), 'gone.away', 1,"
        " '{}', '{}', 'system:chronohub')"
    )
    with pytest.raises(errors.UnknownEventType, match=r"gone\.away"):
        await event_store.read_all()


async def test_old_schema_versions_are_upcast_on_read(
    event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    for version, data in ((1, '{"n": 4}'), (2, '{"count": 5}')):
        await pool.execute(
            "INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version,"
            " data, metadata, actor) VALUES ('count-1', $1::bigint, gen_random_uuid(),"
            " 'test.counted', $1::smallint, $2::jsonb, $3::jsonb, 'system:chronohub')",
            version,
            data,
            models.Metadata().model_dump_json(),
        )
    await event_store.append("count-1", [Counted(count=6, unit="box")], expected=2)
    stored = await event_store.read_all()
    assert [e.data for e in stored] == [
        Counted(count=4, unit="item"),
        Counted(count=5, unit="item"),
        Counted(count=6, unit="box"),
    ]
    assert [e.schema_version for e in stored] == [1, 2, 3]


async def test_the_log_is_append_only(
    event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    await event_store.append("note-imm", [Noted(text="keep")])
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await pool.execute("UPDATE events SET data = '{}'")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await pool.execute("DELETE FROM events")
    assert await count_events(pool) == 1


async def test_read_all_filters(event_store: store.EventStore) -> None:
    alice = models.Metadata(actor=models.Actor(kind="user", name="alice"))
    uid = uuid4()
    await event_store.append("note-f1", [Noted(text="1")], metadata=alice)
    await event_store.append(
        user_events.stream_id(uid), [user_events.UserCreated(user_id=uid, name="fil")]
    )
    await event_store.append("note-f2", [Noted(text="2")])

    everything = await event_store.read_all()
    assert [e.type for e in everything] == ["test.noted", "user.created", "test.noted"]
    by_type = await event_store.read_all(filter=store.EventFilter(types=frozenset({"test.noted"})))
    assert [e.stream_id for e in by_type] == ["note-f1", "note-f2"]
    by_prefix = await event_store.read_all(filter=store.EventFilter(type_prefixes=("user.",)))
    assert [e.type for e in by_prefix] == ["user.created"]
    by_actor = await event_store.read_all(filter=store.EventFilter(actor="user:alice"))
    assert [e.stream_id for e in by_actor] == ["note-f1"]
    by_stream = await event_store.read_all(filter=store.EventFilter(streams=frozenset({"note-f2"})))
    assert [e.stream_id for e in by_stream] == ["note-f2"]
    middle = everything[1].recorded_at
    since = await event_store.read_all(filter=store.EventFilter(since=middle))
    assert [e.position for e in since] == [e.position for e in everything[1:]]
    until = await event_store.read_all(filter=store.EventFilter(until=middle))
    assert [e.position for e in until] == [everything[0].position]
    upto = await event_store.read_all(filter=store.EventFilter(upto=everything[1].checkpoint))
    assert upto == everything[:2]
    paged = await event_store.read_all(everything[0].checkpoint, limit=1)
    assert paged == everything[1:2]
    assert await event_store.head() == everything[-1].checkpoint
    # A LIKE wildcard in a prefix is taken literally.
    assert await event_store.read_all(filter=store.EventFilter(type_prefixes=("%",))) == []


async def test_a_refused_single_append_leaves_the_session_usable(
    event_store: store.EventStore,
) -> None:
    # A single event's append inside a session runs without a savepoint: a conflict, a lost
    # race at ANY and an idempotent retry write nothing instead of failing on a unique key.
    first_id = uuid4()
    await event_store.append("note-s", [Noted(text="one")], expected=0, event_ids=[first_id])
    async with event_store.session() as session:
        with pytest.raises(errors.ConcurrencyConflict):
            await session.append("note-s", [Noted(text="late")], expected=0)
        again = await session.append(
            "note-s", [Noted(text="one")], expected=store.ANY, event_ids=[first_id]
        )
        assert again.version == 1
        written = await session.append("note-s", [Noted(text="two")], expected=1)
        assert written.version == 2
    assert [e.data for e in await event_store.read_stream("note-s")] == [
        Noted(text="one"),
        Noted(text="two"),
    ]


async def test_sessions_racing_at_any_all_get_a_version(event_store: store.EventStore) -> None:
    async def add(i: int) -> int:
        async with event_store.session() as session:
            result = await session.append("note-race", [Noted(text=str(i))], expected=store.ANY)
            return result.version

    versions = await asyncio.gather(*(add(i) for i in range(4)))
    assert sorted(versions) == [1, 2, 3, 4]
