"""Event models without a database: the registry's rules, page decoding, checkpoints, metadata."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar
from uuid import uuid4

import pydantic
import pytest
from pydantic import SecretStr

from events import errors, models
from tests.helpers import Counted, Noted

GLOBAL_REGISTRY = models.registry


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> models.Registry:
    """An empty registry that event classes defined during the test register into."""
    registry = models.Registry()
    monkeypatch.setattr(models, "registry", registry)
    return registry


def define(type_name: str, class_name: str = "Probe", **fields: Any) -> type[models.Event]:
    """Define an event model declaring ``type_name``; defining it registers it."""
    return pydantic.create_model(
        class_name,
        __base__=models.Event,
        __module__=__name__,
        type=(ClassVar[str], type_name),
        **fields,
    )


# --- registry rules, checked when the class is defined --------------------------------------


def test_a_defined_event_registers_into_the_current_registry(fresh: models.Registry) -> None:
    class Pinged(models.Event):
        type: ClassVar[str] = "unittest.pinged"

        host: str

    assert fresh.types() == {"unittest.pinged"}
    assert fresh.model("unittest.pinged") is Pinged
    assert "unittest.pinged" not in GLOBAL_REGISTRY.types()


def test_an_abstract_intermediate_class_is_not_registered(fresh: models.Registry) -> None:
    class Base(models.Event):
        user: str

    class Concrete(Base):
        type: ClassVar[str] = "unittest.concrete"

    assert fresh.types() == {"unittest.concrete"}
    assert fresh.model("unittest.concrete") is Concrete


@pytest.mark.parametrize(
    "type_name",
    ["UserCreated", "user", "User.created", "user.", ".user", "user..created", "user.created-x"],
)
def test_a_bad_type_name_is_refused(fresh: models.Registry, type_name: str) -> None:
    with pytest.raises(errors.RegistryError, match="dotted lower-case name"):
        define(type_name)
    assert fresh.types() == frozenset()


def test_a_bad_type_name_is_refused_by_the_global_registry_too() -> None:
    with pytest.raises(errors.RegistryError, match="'UserCreated'"):
        define("UserCreated")
    assert "UserCreated" not in models.registry.types()


@pytest.mark.parametrize("type_name", ["user.created", "unittest.a_b.c2", "x.y"])
def test_good_type_names_are_accepted(fresh: models.Registry, type_name: str) -> None:
    model = define(type_name)
    assert fresh.model(type_name) is model


def test_the_same_type_declared_by_two_classes_is_refused(fresh: models.Registry) -> None:
    first = define("unittest.twice", "First")
    with pytest.raises(errors.RegistryError, match="declared twice: First and Second"):
        define("unittest.twice", "Second")
    assert fresh.model("unittest.twice") is first


def test_the_same_type_declared_twice_is_refused_by_the_global_registry_too() -> None:
    # Noted (tests.helpers) already holds test.noted in the global registry.
    with pytest.raises(errors.RegistryError, match="declared twice"):
        define("test.noted", "NotNoted")
    assert models.registry.model("test.noted") is Noted


def test_the_same_type_from_two_modules_with_one_class_name_is_refused(
    fresh: models.Registry,
) -> None:
    pydantic.create_model(
        "Created", __base__=models.Event, __module__="plugin_a", type=(ClassVar[str], "x.created")
    )
    with pytest.raises(errors.RegistryError):
        pydantic.create_model(
            "Created",
            __base__=models.Event,
            __module__="plugin_b",
            type=(ClassVar[str], "x.created"),
        )


def test_a_type_name_with_a_trailing_newline_is_refused(fresh: models.Registry) -> None:
    with pytest.raises(errors.RegistryError):
        define("unittest.newline\n")


def test_schema_version_2_without_an_upcaster_from_1_is_refused(fresh: models.Registry) -> None:
    with pytest.raises(errors.RegistryError, match=r"needs an upcaster .* \[1\], has \[\]"):
        define("unittest.versioned", schema_version=(ClassVar[int], 2))
    assert fresh.types() == frozenset()


def test_an_upcaster_for_a_version_that_is_not_older_is_refused(fresh: models.Registry) -> None:
    with pytest.raises(errors.RegistryError, match="needs an upcaster"):
        define(
            "unittest.versioned",
            schema_version=(ClassVar[int], 2),
            upcasters=(ClassVar[dict[int, Any]], {1: dict, 2: dict}),
        )


def test_schema_version_0_is_refused(fresh: models.Registry) -> None:
    with pytest.raises(errors.RegistryError, match="schema_version must be an int >= 1"):
        define("unittest.versioned", schema_version=(ClassVar[int], 0))


def test_schema_version_2_with_its_upcaster_is_accepted(fresh: models.Registry) -> None:
    model = define(
        "unittest.versioned",
        schema_version=(ClassVar[int], 2),
        upcasters=(ClassVar[dict[int, Any]], {1: dict}),
    )
    assert fresh.model("unittest.versioned") is model


@pytest.mark.parametrize(
    "field_name",
    ["password", "api_token", "auth_code", "token", "client_secret", "api_key", "session_cookie"],
)
def test_a_field_named_like_a_secret_is_refused(fresh: models.Registry, field_name: str) -> None:
    with pytest.raises(
        errors.RegistryError, match=rf"unittest\.login\.{field_name}: a field named"
    ):
        define("unittest.login", **{field_name: (str, ...)})
    assert fresh.types() == frozenset()


@pytest.mark.parametrize(
    "annotation", [SecretStr, SecretStr | None, list[SecretStr], pydantic.SecretBytes]
)
def test_a_secret_typed_field_is_refused(fresh: models.Registry, annotation: Any) -> None:
    with pytest.raises(errors.RegistryError, match="secret types may not enter the event log"):
        define("unittest.login", key=(annotation, ...))
    assert fresh.types() == frozenset()


def test_a_secret_str_field_is_refused_when_the_class_statement_runs(
    fresh: models.Registry,
) -> None:
    def define_login() -> None:
        class Login(models.Event):
            type: ClassVar[str] = "unittest.login"

            key: SecretStr | None = None

    with pytest.raises(errors.RegistryError, match=r"unittest\.login\.key"):
        define_login()


def test_a_generic_secret_field_is_refused(fresh: models.Registry) -> None:
    with pytest.raises(errors.RegistryError):
        define("unittest.login", key=(pydantic.Secret[str], ...))


def test_fields_that_only_mention_a_secret_are_allowed(fresh: models.Registry) -> None:
    class TokenIssued(models.Event):
        type: ClassVar[str] = "unittest.token_issued"

        token_id: str
        password_set: bool
        token_prefix: str
        code_cell_count: int

    assert fresh.model("unittest.token_issued") is TokenIssued
    assert set(TokenIssued.model_fields) == {
        "token_id",
        "password_set",
        "token_prefix",
        "code_cell_count",
    }


def test_model_of_an_unknown_type_names_it() -> None:
    with pytest.raises(errors.UnknownEventType, match=r"'unittest\.nothing'") as caught:
        models.Registry().model("unittest.nothing")
    assert caught.value.type_name == "unittest.nothing"


# --- decoding a page of stored rows ----------------------------------------------------------


def stored_row(
    type_name: str, schema_version: int, data: Any, position: int = 1, **envelope: Any
) -> dict[str, Any]:
    """One row as the ``read_all`` query builds it."""
    return {
        "tag": f"{type_name}@{schema_version}",
        "position": position,
        "tx": str(1000 + position),
        "stream_id": "note-a",
        "stream_version": position,
        "event_id": str(uuid4()),
        "type": type_name,
        "schema_version": schema_version,
        "data": data,
        "metadata": json.loads(models.Metadata().model_dump_json()),
        "recorded_at": "2025-01-02T03:04:05.123456+00:00",
        **envelope,
    }


def page(*rows: dict[str, Any]) -> str:
    return json.dumps(list(rows))


@pytest.fixture
def registry() -> models.Registry:
    """A registry of its own holding the test events Noted and Counted."""
    own = models.Registry()
    own.register(Noted)
    own.register(Counted)
    return own


def test_decode_page_builds_recorded_events_of_the_right_models(
    registry: models.Registry,
) -> None:
    noted = stored_row("test.noted", 1, {"text": "hello"}, position=7)
    counted = stored_row("test.counted", 3, {"count": 2, "unit": "kg"}, position=8)

    decoded = registry.decode_page(page(noted, counted))

    assert [e.data for e in decoded] == [Noted(text="hello"), Counted(count=2, unit="kg")]
    first = decoded[0]
    assert isinstance(first, models.RecordedEvent)
    assert (first.position, first.tx, first.stream_version) == (7, 1007, 7)
    assert str(first.event_id) == noted["event_id"]
    assert first.type == "test.noted"
    assert first.metadata == models.Metadata()
    assert first.recorded_at == datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert first.checkpoint == models.Checkpoint(1007, 7)
    assert "tag" not in first.model_dump()


def test_decode_page_keeps_the_order_of_the_rows(registry: models.Registry) -> None:
    rows = [stored_row("test.noted", 1, {"text": str(n)}, position=n) for n in (3, 1, 2)]
    decoded = registry.decode_page(page(*rows))
    assert [e.position for e in decoded] == [3, 1, 2]
    assert [e.data for e in decoded] == [Noted(text="3"), Noted(text="1"), Noted(text="2")]


@pytest.mark.parametrize(
    ("version", "data", "expected"),
    [
        (1, {"n": 5}, Counted(count=5, unit="item")),
        (2, {"count": 7}, Counted(count=7, unit="item")),
        (3, {"count": 9, "unit": "kg"}, Counted(count=9, unit="kg")),
    ],
)
def test_decode_page_upcasts_old_schema_versions(
    registry: models.Registry, version: int, data: dict[str, Any], expected: Counted
) -> None:
    decoded = registry.decode_page(page(stored_row("test.counted", version, data)))
    assert [e.data for e in decoded] == [expected]
    assert decoded[0].type == "test.counted"
    assert decoded[0].stream_id == "note-a"


def test_decode_page_mixes_old_and_current_rows_in_order(registry: models.Registry) -> None:
    rows = [
        stored_row("test.noted", 1, {"text": "a"}, position=1),
        stored_row("test.counted", 1, {"n": 1}, position=2),
        stored_row("test.counted", 3, {"count": 3, "unit": "x"}, position=3),
    ]
    decoded = registry.decode_page(page(*rows))
    assert [e.data for e in decoded] == [
        Noted(text="a"),
        Counted(count=1, unit="item"),
        Counted(count=3, unit="x"),
    ]
    assert [e.position for e in decoded] == [1, 2, 3]


def test_decode_page_of_an_unknown_type_names_it(registry: models.Registry) -> None:
    rows = [stored_row("test.noted", 1, {"text": "a"}), stored_row("unittest.gone", 1, {})]
    with pytest.raises(errors.UnknownEventType, match=r"'unittest\.gone'") as caught:
        registry.decode_page(page(*rows))
    assert caught.value.type_name == "unittest.gone"


def test_decode_page_sees_a_type_registered_after_an_earlier_decode() -> None:
    own = models.Registry()
    own.register(Noted)
    counted_page = page(stored_row("test.counted", 3, {"count": 1, "unit": "x"}))
    with pytest.raises(errors.UnknownEventType):
        own.decode_page(counted_page)
    own.register(Counted)
    assert [e.data for e in own.decode_page(counted_page)] == [Counted(count=1, unit="x")]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (stored_row("test.noted", 1, {"text": 5}), "stored test.noted event fails validation"),
        (stored_row("test.noted", 1, {"text": "a", "extra": 1}), "fails validation"),
        (stored_row("test.counted", 1, {"n": "many"}), "fails validation"),
        (stored_row("test.noted", 1, None), "has no data"),
        (stored_row("test.counted", 4, {"count": 1}), "version 4 is not known"),
        (stored_row("test.noted", 1, {"text": "a"}, stream_version="x"), "envelope is malformed"),
    ],
)
def test_decode_page_refuses_a_bad_row(
    registry: models.Registry, row: dict[str, Any], message: str
) -> None:
    good = stored_row("test.noted", 1, {"text": "fine"})
    with pytest.raises(errors.InvalidEvent, match=message):
        registry.decode_page(page(good, row))


def test_decode_page_refuses_a_page_that_is_not_an_array(registry: models.Registry) -> None:
    with pytest.raises(errors.InvalidEvent, match="must be a JSON array"):
        registry.decode_page("{}")


@pytest.mark.parametrize("empty", ["[]", b"[]"])
def test_decode_page_of_an_empty_page_is_empty(registry: models.Registry, empty: Any) -> None:
    assert registry.decode_page(empty) == []
    assert models.Registry().decode_page(empty) == []


def test_a_registry_with_nothing_registered_refuses_any_row() -> None:
    with pytest.raises(errors.UnknownEventType, match=r"test\.noted"):
        models.Registry().decode_page(page(stored_row("test.noted", 1, {"text": "a"})))


# --- checkpoints -------------------------------------------------------------------------------


def test_checkpoint_str_and_parse_round_trip() -> None:
    checkpoint = models.Checkpoint(tx=123456789012, position=42)
    assert str(checkpoint) == "123456789012:42"
    assert models.Checkpoint.parse(str(checkpoint)) == checkpoint
    assert models.Checkpoint.parse("0:0") == models.ORIGIN


def test_checkpoints_order_by_tx_then_position() -> None:
    assert models.Checkpoint(2, 1) > models.Checkpoint(1, 99)
    assert models.Checkpoint(1, 2) > models.Checkpoint(1, 1)
    assert models.Checkpoint(1, 1) == models.Checkpoint(1, 1)
    unordered = [models.Checkpoint(2, 1), models.Checkpoint(1, 5), models.Checkpoint(1, 3)]
    assert sorted(unordered) == [
        models.Checkpoint(1, 3),
        models.Checkpoint(1, 5),
        models.Checkpoint(2, 1),
    ]
    assert all(c > models.ORIGIN for c in unordered)


@pytest.mark.parametrize("text", ["x:1", "1", "1:", ":1", "", "1:2:3", "-1:2", "1:x", " 1:2"])
def test_checkpoint_parse_refuses_malformed_text(text: str) -> None:
    with pytest.raises(errors.InvalidEvent, match="is not of the form"):
        models.Checkpoint.parse(text)


def test_checkpoint_parse_refuses_superscript_digits() -> None:
    with pytest.raises(errors.InvalidEvent):
        models.Checkpoint.parse("1:²")


# --- actors and metadata -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actor", "label"),
    [
        (models.Actor(kind="user", name="alice"), "user:alice"),
        (models.Actor(kind="service", name="cull-idle"), "service:cull-idle"),
        (models.SYSTEM, "system:chronohub"),
    ],
)
def test_actor_label(actor: models.Actor, label: str) -> None:
    assert actor.label == label


def test_actor_refuses_an_unknown_kind_and_an_empty_name() -> None:
    with pytest.raises(pydantic.ValidationError):
        models.Actor(kind="robot", name="x")  # type: ignore[arg-type]
    with pytest.raises(pydantic.ValidationError):
        models.Actor(kind="user", name="")


def test_metadata_defaults_to_the_system_actor() -> None:
    metadata = models.Metadata()
    assert metadata.actor == models.SYSTEM
    assert metadata.actor.label == "system:chronohub"
    assert metadata.request_id is None


@pytest.mark.parametrize(
    "build",
    [
        lambda: models.Metadata(user="alice"),
        lambda: models.Metadata.model_validate({"actor": {"kind": "user", "name": "a", "x": 1}}),
    ],
)
def test_metadata_refuses_unknown_fields(build: Callable[[], models.Metadata]) -> None:
    with pytest.raises(pydantic.ValidationError, match="Extra inputs are not permitted"):
        build()


def test_events_and_metadata_are_frozen() -> None:
    with pytest.raises(pydantic.ValidationError):
        Noted(text="a").text = "b"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        models.Metadata().request_id = "r"  # type: ignore[misc]


# --- decoding stored rows as the driver returns them ---------------------------------------


def row_of(
    type_name: str, schema_version: int, data: Any, position: int = 1, metadata: str | None = None
) -> tuple[Any, ...]:
    """One row as the ``read_all`` query returns it (``models.ROW_COLUMNS``)."""
    return (
        position,
        1000 + position,
        "note-a",
        position,
        uuid4(),
        type_name,
        schema_version,
        json.dumps(data),
        metadata or models.Metadata().model_dump_json(),
        datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
    )


def test_decode_rows_equals_decoding_the_same_page(registry: models.Registry) -> None:
    rows = [
        row_of("test.noted", 1, {"text": "a"}, 1),
        row_of("test.counted", 3, {"count": 1, "unit": "x"}, 2),
        row_of("test.noted", 1, {"text": "b"}, 3),
        row_of("test.counted", 1, {"n": 5}, 4),
        row_of("test.noted", 1, {"text": "c"}, 5),
    ]
    decoded = registry.decode_rows(rows)
    as_page = registry.decode_page(
        page(
            *(
                stored_row(
                    r[5],
                    r[6],
                    json.loads(r[7]),
                    position=r[0],
                    event_id=str(r[4]),
                    recorded_at=r[9].isoformat(),
                )
                for r in rows
            )
        )
    )
    assert decoded == as_page
    assert [e.position for e in decoded] == [1, 2, 3, 4, 5]
    assert decoded[3].data == Counted(count=5, unit="item")
    assert all(isinstance(e, models.RecordedEvent) for e in decoded)
    assert decoded[0].model_dump() == as_page[0].model_dump()
    assert json.loads(decoded[0].model_dump_json()) == json.loads(as_page[0].model_dump_json())


def test_decode_rows_shares_equal_metadata(registry: models.Registry) -> None:
    alice = models.Metadata(actor=models.Actor(kind="user", name="alice")).model_dump_json()
    rows = [row_of("test.noted", 1, {"text": str(i)}, i, alice) for i in range(1, 4)]
    decoded = registry.decode_rows([*rows, row_of("test.noted", 1, {"text": "s"}, 4)])
    assert decoded[0].metadata is decoded[2].metadata
    assert decoded[0].metadata.actor.label == "user:alice"
    assert decoded[3].metadata == models.Metadata()
    bob = models.Metadata(actor=models.Actor(kind="user", name="bob")).model_dump_json()
    mixed = [
        row_of("test.noted", 1, {"text": str(i)}, i, m)
        for i, m in enumerate((alice, bob, alice), 1)
    ]
    again = registry.decode_rows(mixed)
    assert again[0].metadata is again[2].metadata
    assert again[1].metadata.actor.label == "user:bob"


def test_decoded_rows_behave_as_validated_events(registry: models.Registry) -> None:
    [event] = registry.decode_rows([row_of("test.noted", 1, {"text": "a"}, 5)])
    assert isinstance(event.tx, int)
    assert event.model_dump(exclude_unset=True)["position"] == 5
    moved = event.model_copy(update={"position": 6})
    assert (moved.position, event.position) == (6, 5)
    assert event.model_fields_set == set(models.RecordedEvent.model_fields)


def test_decode_rows_names_the_row_at_fault(registry: models.Registry) -> None:
    rows = [row_of("test.noted", 1, {"text": "a"}, 1), row_of("test.noted", 1, {"txt": "b"}, 2)]
    with pytest.raises(errors.InvalidEvent, match=r"test\.noted event at position 2"):
        registry.decode_rows(rows)
    with pytest.raises(errors.InvalidEvent, match=r"position 9 has malformed metadata"):
        registry.decode_rows([row_of("test.noted", 1, {"text": "a"}, 9, '{"actor": 1}')])
    with pytest.raises(errors.UnknownEventType, match=r"'test\.nothing'"):
        registry.decode_rows([row_of("test.nothing", 1, {}, 1)])
    with pytest.raises(errors.InvalidEvent, match=r"version 7 is not known"):
        registry.decode_rows([row_of("test.counted", 7, {"count": 1}, 1)])
    with pytest.raises(errors.InvalidEvent, match=r"position 3 has no data"):
        registry.decode_rows([row_of("test.counted", 1, [1], 3)])
    assert registry.decode_rows([]) == []
