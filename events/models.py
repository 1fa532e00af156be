"""Event models: the ``Event`` base class, its registry, metadata and the recorded envelope.

Every hub action is a subclass of ``Event`` with a stable ``type`` name (``"user.created"``,
never a Python import path) and a ``schema_version``. Older stored versions are upcast on
read by pure dict -> dict functions. The registry checks each model when its class is
defined, so a bad model fails at import time, not when the first event is written.
"""

from __future__ import annotations

import contextlib
import gc
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, NamedTuple, Union
from uuid import UUID

import pydantic
import pydantic_core
from pydantic import BaseModel, ConfigDict, Field

from events import errors

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

TYPE_NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
CHECKPOINT = re.compile(r"([0-9]+):([0-9]+)")

# A field whose name ends like this would carry a credential into an immutable, exported
# log. Events record that a secret exists (``password_set``, ``token_id``, ``token_prefix``),
# never the secret itself; ``SecretStr``/``SecretBytes`` fields are refused for the same reason.
SECRET_FIELD = re.compile(
    r"(^|_)(password|passwd|secret|token|code|api_key|private_key|secret_key|signing_key|cookie"
    r"|credentials?)$",
    re.IGNORECASE,
)


class Actor(BaseModel):
    """Who caused an event: a user, a service, or the hub itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["user", "service", "system"]
    name: str = Field(min_length=1, max_length=255)

    @property
    def label(self) -> str:
        """The denormalised form stored for audit queries, e.g. ``user:alice``."""
        return f"{self.kind}:{self.name}"


SYSTEM = Actor(kind="system", name="chronohub")


class Metadata(BaseModel):
    """Who and what request caused an event; travels beside the payload, never inside it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    actor: Actor = SYSTEM
    request_id: str | None = Field(default=None, max_length=200)
    correlation_id: UUID | None = None
    causation_id: UUID | None = None
    client_address: str | None = Field(default=None, max_length=200)


class Event(BaseModel):
    """Base of every event payload; subclasses set ``type`` and, on change, ``schema_version``.

    ``upcasters[n]`` turns a stored version-``n`` payload into version ``n + 1``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: ClassVar[str]
    schema_version: ClassVar[int] = 1
    upcasters: ClassVar[Mapping[int, Upcaster]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "type" in cls.__dict__:  # abstract intermediate classes declare no type
            registry.register(cls)


class Checkpoint(NamedTuple):
    """A reader's place in the global order: the writing transaction's id and the position.

    Always compare the pair, never the position alone (see ``events/queries.sql``).
    """

    tx: int
    position: int

    def __str__(self) -> str:
        return f"{self.tx}:{self.position}"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse the ``"<tx>:<position>"`` token that ``str()`` produces."""
        match = CHECKPOINT.fullmatch(text)
        if match is None:
            raise errors.InvalidEvent(f"checkpoint {text!r} is not of the form '<tx>:<position>'")
        return cls(int(match[1]), int(match[2]))


ORIGIN = Checkpoint(0, 0)


class RecordedEvent(BaseModel):
    """An event as stored: the payload in ``data`` and its envelope (stream, version, position…)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    position: int
    tx: int
    stream_id: str
    stream_version: int
    event_id: UUID
    type: str
    schema_version: int
    data: Event
    metadata: Metadata
    recorded_at: datetime

    @property
    def checkpoint(self) -> Checkpoint:
        """Where a reader that has handled this event stands."""
        return Checkpoint(self.tx, self.position)

    def __eq__(self, other: object) -> bool:
        # Pages decode into per-type subclasses (see Registry.decode_page); an event equals
        # another with the same fields whichever class carried it.
        if not isinstance(other, RecordedEvent):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in RecordedEvent.model_fields)

    def __hash__(self) -> int:
        return hash((self.event_id, self.position))


class Registry:
    """Maps stable type names to event models; decodes stored rows, upcasting old versions."""

    def __init__(self) -> None:
        self._models: dict[str, type[Event]] = {}
        self._page_adapter: pydantic.TypeAdapter[list[RecordedEvent]] | None = None
        self._list_adapters: dict[str, pydantic.TypeAdapter[list[Any]]] = {}
        self._recorded_classes: dict[str, type[RecordedEvent]] = {}

    def register(self, model: type[Event]) -> None:
        """Check ``model`` against the registry's rules and add it; raises ``RegistryError``."""
        name = model.__dict__.get("type")
        if not isinstance(name, str) or not TYPE_NAME.fullmatch(name):
            raise errors.RegistryError(
                f"{model.__qualname__}.type must be a dotted lower-case name like 'user.created',"
                f" got {name!r}"
            )
        existing = self._models.get(name)
        # The same class defined again (a module reloaded) replaces itself; another may not.
        if existing is not None and _origin(existing) != _origin(model):
            raise errors.RegistryError(
                f"event type {name!r} is declared twice: {existing.__qualname__}"
                f" and {model.__qualname__}"
            )
        version = model.schema_version
        if not isinstance(version, int) or version < 1:
            raise errors.RegistryError(f"{name}: schema_version must be an int >= 1")
        if set(model.upcasters) != set(range(1, version)):
            raise errors.RegistryError(
                f"{name}: version {version} needs an upcaster for each of versions"
                f" {list(range(1, version))}, has {sorted(model.upcasters)}"
            )
        _check_no_secrets(name, model)
        self._models[name] = model
        self._page_adapter = None
        self._list_adapters = {}
        self._recorded_classes = {}

    def model(self, type_name: str) -> type[Event]:
        """The model registered for ``type_name``; raises ``UnknownEventType``."""
        try:
            return self._models[type_name]
        except KeyError:
            raise errors.UnknownEventType(type_name) from None

    def types(self) -> frozenset[str]:
        """Every registered type name."""
        return frozenset(self._models)

    def upcast(self, type_name: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
        """Bring a stored payload of ``version`` up to the model's current version."""
        model = self.model(type_name)
        if version > model.schema_version or version < 1:
            raise errors.InvalidEvent(
                f"{type_name} version {version} is not known (current is {model.schema_version})"
            )
        for step in range(version, model.schema_version):
            data = model.upcasters[step](data)
        return data

    def decode_payload(self, type_name: str, version: int, data: dict[str, Any]) -> Event:
        """Validate a stored payload into its model, upcasting first if it is old."""
        model = self.model(type_name)
        if version != model.schema_version:
            data = self.upcast(type_name, version, data)
        try:
            return model.model_validate(data)
        except pydantic.ValidationError as exc:
            raise errors.InvalidEvent(f"stored {type_name} event fails validation: {exc}") from exc

    def decode_page(self, page_json: str | bytes) -> list[RecordedEvent]:
        """Decode a JSON array of stored rows (built by the database) into recorded events.

        The whole page is validated in one call into pydantic's Rust core, with the model
        picked per row by a ``"<type>@<version>"`` tag: decoding row by row in Python is
        what caps a straightforward replay at ~56,000 events/s. Rows of an old schema
        version come out as plain dicts and take the upcasting path.
        """
        adapter = self._page_adapter or self._build_page_adapter()
        try:
            with collection_paused():
                rows = adapter.validate_json(page_json)
        except ValueError as exc:
            if not isinstance(exc, pydantic.ValidationError) or _json_invalid(exc):
                raise errors.InvalidEvent(f"a page of events is not valid JSON: {exc}") from exc
            # Find the row at fault and say precisely what is wrong with it.
            return [self._decode_one(row) for row in pydantic_core_from_json(page_json)]
        return [
            self._decode_one(row.model_dump()) if isinstance(row, _LegacyRow) else row
            for row in rows
        ]

    def decode_rows(self, rows: Sequence[Sequence[Any]]) -> list[RecordedEvent]:
        """Decode stored rows as the driver returns them, columns in ``ROW_COLUMNS`` order.

        Only the payloads are validated, those of one type in one call into pydantic's Rust
        core (a call per row cost twice as much), upcast first if old; each distinct metadata
        once per call. The envelope's columns arrive typed (bigint, uuid, timestamptz…) by
        PostgreSQL's binary protocol: validating them again bought nothing and cost more than
        the rest. Measured on 5,000-event pages against the page built as one JSON document
        by the server and validated whole: a quarter of the server's CPU and about half of
        the client's.
        """
        with collection_paused():
            # One pass groups the rows by (type, schema version); each group's payloads are
            # validated in one call, then handed out in order by an iterator per group. The
            # loop below is the whole per-event cost in Python: it builds each envelope with
            # local names only (profiled: helper calls and index lookups were a third of it).
            groups: dict[tuple[str, int], list[Sequence[Any]]] = {}
            for row in rows:
                key = (row[5], row[6])
                group = groups.get(key)
                if group is None:
                    groups[key] = [row]
                else:
                    group.append(row)
            payloads: dict[tuple[str, int], Callable[[], Event]] = {}
            classes: dict[str, type[RecordedEvent]] = {}
            for key, group in groups.items():
                payloads[key] = iter(self._payloads(key[0], key[1], group)).__next__
                classes[key[0]] = self._recorded_class(key[0])
            metadata: dict[str, Metadata] = {}
            out: list[RecordedEvent] = []
            append = out.append
            new = object.__new__
            set_dict = object.__setattr__
            # The three other slots of a pydantic model, set through their descriptors: a
            # generic ``object.__setattr__`` looks the name up each time (measured: a tenth
            # of the loop).
            set_fields, set_extra, set_private = _SLOT_SETTERS
            fields_set = _RECORDED_FIELDS
            # Consecutive events mostly share their metadata (one request writes several;
            # the log of a bulk import one actor): comparing the text with the last row's is
            # cheaper than hashing it for the lookup, which each new string from the driver
            # would need.
            last_text: str | None = None
            envelope: Metadata | None = None
            for row in rows:
                position, tx, stream_id, version, event_id, type_name, schema, _, meta, at = row
                if meta != last_text:
                    envelope = metadata.get(meta)
                    if envelope is None:
                        envelope = metadata[meta] = _metadata(meta, position)
                    last_text = meta
                # The event built without validation (its fields are of their types
                # already): what ``model_construct`` does, less its per-field Python loop
                # over defaults and aliases (six times the cost, measured); inline, per row.
                event = new(classes[type_name])
                set_dict(
                    event,
                    "__dict__",
                    {
                        "position": position,
                        "tx": tx,
                        "stream_id": stream_id,
                        "stream_version": version,
                        "event_id": event_id,
                        "type": type_name,
                        "schema_version": schema,
                        "data": payloads[type_name, schema](),
                        "metadata": envelope,
                        "recorded_at": at,
                    },
                )
                set_fields(event, fields_set)
                set_extra(event, None)
                set_private(event, None)
                append(event)
        return out

    def _recorded_class(self, type_name: str) -> type[RecordedEvent]:
        """``RecordedEvent`` with ``data`` typed as the type's model, so that dumping it
        dumps the payload's fields (a field typed ``Event`` dumps as ``{}``)."""
        recorded = self._recorded_classes.get(type_name)
        if recorded is None:
            recorded = pydantic.create_model(
                f"Recorded[{type_name}]", __base__=RecordedEvent, data=(self.model(type_name), ...)
            )
            self._recorded_classes[type_name] = recorded
        return recorded

    def _payloads(self, type_name: str, version: int, rows: list[Sequence[Any]]) -> list[Event]:
        """The payloads of ``rows``, all of ``type_name`` at schema ``version``."""
        model = self.model(type_name)
        if version != model.schema_version:
            return [self.decode_payload(type_name, version, _json_object(row)) for row in rows]
        adapter = self._list_adapters.get(type_name)
        if adapter is None:
            # Strings are parsed without pydantic-core's string cache except for keys: a
            # payload's values (ids, names) rarely repeat within a page, and looking each up
            # in the cache cost more than it saved (measured: a fifth of the validation).
            adapter = self._list_adapters[type_name] = pydantic.TypeAdapter(
                list[model],  # type: ignore[valid-type]
                config=ConfigDict(cache_strings="keys"),
            )
        try:
            return adapter.validate_json("[" + ",".join(row[7] for row in rows) + "]")
        except pydantic.ValidationError:
            pass
        for row in rows:  # find the row at fault and say which it is
            try:
                model.model_validate_json(row[7])
            except pydantic.ValidationError as exc:
                raise errors.InvalidEvent(
                    f"stored {type_name} event at position {row[0]} fails validation: {exc}"
                ) from exc
        raise AssertionError(
            "a page failed validation but none of its rows did"
        )  # pragma: no cover

    def _decode_one(self, row: dict[str, Any]) -> RecordedEvent:
        data = row["data"]
        if not isinstance(data, dict):
            raise errors.InvalidEvent(f"stored event at position {row.get('position')} has no data")
        payload = self.decode_payload(row["type"], row["schema_version"], data)
        fields = {k: v for k, v in row.items() if k not in ("tag", "data")}
        try:
            envelope = RecordedEvent.model_validate({**fields, "data": {}})
        except pydantic.ValidationError as exc:
            raise errors.InvalidEvent(f"stored event envelope is malformed: {exc}") from exc
        return envelope.model_copy(update={"data": payload})

    def _build_page_adapter(self) -> pydantic.TypeAdapter[list[RecordedEvent]]:
        members: list[Any] = []
        for name, model in sorted(self._models.items()):
            tag: Any = Literal[f"{name}@{model.schema_version}"]
            members.append(
                pydantic.create_model(
                    f"Recorded[{name}]",
                    __base__=RecordedEvent,
                    tag=(tag, Field(exclude=True)),
                    data=(model, ...),
                )
            )
        legacy = tuple(
            f"{name}@{v}"
            for name, model in self._models.items()
            for v in range(1, model.schema_version)
        )
        if legacy:
            legacy_tag: Any = Literal[legacy]
            members.append(
                pydantic.create_model(
                    "Recorded[legacy]", __base__=_LegacyRow, tag=(legacy_tag, ...)
                )
            )
        if not members:
            item: Any = _LegacyRow  # nothing registered: any row is an unknown type
        elif len(members) == 1:
            item = members[0]
        else:
            item = Annotated[Union[tuple(members)], Field(discriminator="tag")]  # noqa: UP007
        adapter: pydantic.TypeAdapter[list[RecordedEvent]] = pydantic.TypeAdapter(list[item])
        self._page_adapter = adapter
        return adapter


ROW_COLUMNS = (
    "position",
    "tx",
    "stream_id",
    "stream_version",
    "event_id",
    "type",
    "schema_version",
    "data",
    "metadata",
    "recorded_at",
)
"""The columns of a stored row, in the order ``Registry.decode_rows`` takes them (the
transaction id as an int, ``xid8`` through the binary protocol; the payloads as text)."""

# A plain set, as pydantic keeps (exclude_unset and model_copy(update=...) need one); shared
# by every decoded event: model_copy copies it before changing it.
_RECORDED_FIELDS = set(RecordedEvent.model_fields)
_SLOT_SETTERS = tuple(
    BaseModel.__dict__[slot].__set__
    for slot in ("__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")
)


def _json_object(row: Sequence[Any]) -> dict[str, Any]:
    data = pydantic_core.from_json(row[7])
    if not isinstance(data, dict):
        raise errors.InvalidEvent(f"stored event at position {row[0]} has no data")
    return data


def _metadata(text: str, position: int) -> Metadata:
    try:
        return Metadata.model_validate_json(text)
    except pydantic.ValidationError as exc:
        raise errors.InvalidEvent(
            f"stored event at position {position} has malformed metadata: {exc}"
        ) from exc


class _LegacyRow(BaseModel):
    """A stored row of an older schema version, kept as plain data until it is upcast."""

    model_config = ConfigDict(extra="allow")

    tag: str
    data: dict[str, Any]
    type: str
    schema_version: int


def pydantic_core_from_json(page_json: str | bytes) -> list[dict[str, Any]]:
    """Parse a page without validating it, for the precise-error path."""
    rows = pydantic_core.from_json(page_json)
    if not isinstance(rows, list):
        raise errors.InvalidEvent("a page of events must be a JSON array")
    return rows


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a bulk read (re-entrant).

    A decoded page allocates some ten container objects per event, all acyclic. With the
    collector on, a collection runs every 700 allocations and walks the survivors again
    and again; re-enabled while a page is still alive, it walks the whole page once more.
    Measured on 5,000-event pages: 58,000 events/s decoded with it, 156,000/s without.
    Objects freed while it is paused do not count towards the next collection.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _origin(model: type) -> tuple[str, str]:
    return (model.__module__, model.__qualname__)


def _json_invalid(exc: pydantic.ValidationError) -> bool:
    return any(error["type"] == "json_invalid" for error in exc.errors())


def secret_key_in(value: object) -> str | None:
    """The first key named like a secret in ``value`` (dicts and lists, at any depth), or None:
    for fields whose keys are not the model's own (a spawner's state)."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if isinstance(key, str) and SECRET_FIELD.search(key):
                return key
            if found := secret_key_in(inner):
                return found
    elif isinstance(value, list):
        for inner in value:
            if found := secret_key_in(inner):
                return found
    return None


def _check_no_secrets(where: str, model: type[BaseModel]) -> None:
    """Refuse fields named like secrets or typed as secrets, in nested models too."""
    for field_name, field in model.model_fields.items():
        if SECRET_FIELD.search(field_name):
            raise errors.RegistryError(
                f"{where}.{field_name}: a field named like a secret may not enter the event log;"
                " record a hash, an id or the fact that it was set instead"
            )
        for part in _annotation_parts(field.annotation):
            if isinstance(part, type) and issubclass(
                part, pydantic.SecretStr | pydantic.SecretBytes | pydantic.Secret
            ):
                raise errors.RegistryError(
                    f"{where}.{field_name}: secret types may not enter the event log"
                )
            if isinstance(part, type) and issubclass(part, BaseModel):
                _check_no_secrets(f"{where}.{field_name}", part)


def _annotation_parts(annotation: Any) -> list[Any]:
    """The annotation and every type nested in it (unions, lists, dicts, Annotated…)."""
    parts = [annotation]
    origin = typing.get_origin(annotation)
    if origin is not None:
        parts.append(origin)
    if origin is not None or isinstance(annotation, types.UnionType):
        for arg in typing.get_args(annotation):
            parts.extend(_annotation_parts(arg))
    return parts


registry = Registry()
