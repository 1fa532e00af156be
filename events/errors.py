"""Typed errors of the event log. Every error the store raises is an ``EventStoreError``."""

from __future__ import annotations

from uuid import UUID


class EventStoreError(Exception):
    """Base class of every error raised by the ``events`` package."""


class ConcurrencyConflict(EventStoreError):
    """The stream is not at the version the append expected."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"stream {stream_id!r} is at version {actual},"
            f" the append expected {_describe(expected)}"
        )


class IdempotencyConflict(EventStoreError):
    """An event id was reused for a different append than the one that first wrote it."""

    def __init__(self, event_id: UUID, detail: str) -> None:
        self.event_id = event_id
        super().__init__(f"event id {event_id} was already used: {detail}")


class UnknownEventType(EventStoreError):
    """An event type name that no registered model declares."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name
        super().__init__(f"unknown event type {type_name!r}")


class InvalidEvent(EventStoreError):
    """An event payload or metadata that fails validation, or a bad append request."""


class PayloadTooLarge(InvalidEvent):
    """An event whose serialised payload exceeds the store's limit."""

    def __init__(self, type_name: str, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"event {type_name!r} payload is {size} bytes, over the limit of {limit} bytes"
        )


class DatabaseUnavailable(EventStoreError):
    """The database cannot serve now: it did not answer, dropped the connection, is out of
    connections or shutting down. The driver's own error is the cause (``__cause__``); see
    ``events.sql``, the one place driver errors become this."""


class RegistryError(EventStoreError):
    """An event model that breaks the registry's rules (raised at import time)."""


class StoreClosed(EventStoreError):
    """The event store was closed while an append waited for its batch (nothing of it was
    written) or while its batch was being written (written or not, like an append whose
    caller gave up)."""


def _describe(expected: int) -> str:
    if expected == -1:
        return "any version"
    if expected == 0:
        return "that it does not exist"
    return f"version {expected}"
