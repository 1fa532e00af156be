"""The y-websocket wire protocol: strict parsing of incoming frames, and building outgoing ones.

One WebSocket binary message is one protocol message: ``varUint(type)`` then the payload
(sync: ``varUint(subtype)`` + ``varUint8Array``; awareness: ``varUint8Array``; queryAwareness:
nothing). Outgoing messages use pycrdt's encoders. Incoming ones are parsed here rather than
with ``pycrdt.Decoder``, because that decoder reads past the end of a truncated frame
(IndexError) or silently returns a short slice, and a server must name the problem and refuse
the frame before anything of it is applied or stored.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import pycrdt

from collab.errors import ProtocolError

SYNC = 0
AWARENESS = 1
AUTH = 2
QUERY_AWARENESS = 3

SYNC_STEP1 = 0
SYNC_STEP2 = 1
SYNC_UPDATE = 2

PERMISSION_DENIED = 0
EMPTY_UPDATE = b"\x00\x00"
# A varUint longer than this cannot be a length or an id a sane client sends (2**63).
MAX_VARUINT_BYTES = 9

_FIN_BINARY = 0x82  # a WebSocket frame's first byte: final fragment, binary opcode
_HEAD16 = struct.Struct("!BBH")
_HEAD64 = struct.Struct("!BBQ")


class Reader:
    """Reads lib0-encoded values from one frame; every overrun is a ``ProtocolError``."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def var_uint(self, what: str) -> int:
        """A little-endian base-128 unsigned integer."""
        value = 0
        shift = 0
        data, pos = self.data, self.pos
        for _ in range(MAX_VARUINT_BYTES):
            if pos >= len(data):
                raise ProtocolError(f"truncated varint ({what})")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                self.pos = pos
                return value
            shift += 7
        raise ProtocolError(f"varint too long ({what})")

    def var_bytes(self, what: str) -> bytes:
        """``varUint(length)`` followed by that many bytes."""
        length = self.var_uint(f"length of {what}")
        end = self.pos + length
        if end > len(self.data):
            raise ProtocolError(
                f"truncated {what}: {length} bytes announced, {len(self.data) - self.pos} present"
            )
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def var_string(self, what: str) -> str:
        """``varUint(utf-8 length)`` followed by UTF-8 text."""
        raw = self.var_bytes(what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(f"{what} is not UTF-8") from None

    def end(self, what: str) -> None:
        """Refuse trailing bytes."""
        if self.pos != len(self.data):
            raise ProtocolError(f"{len(self.data) - self.pos} unexpected bytes after {what}")


@dataclass(frozen=True, slots=True)
class SyncMessage:
    """A sync message: step 1 (a state vector), step 2 or update (a Yjs update)."""

    subtype: int
    data: bytes


@dataclass(frozen=True, slots=True)
class AwarenessMessage:
    """An awareness update and the (client id, clock, state or None) entries it holds."""

    update: bytes
    entries: tuple[tuple[int, int, Any], ...]


@dataclass(frozen=True, slots=True)
class QueryAwareness:
    """A request for every awareness state the server knows."""


@dataclass(frozen=True, slots=True)
class AuthMessage:
    """Message type 2 from a client (JupyterLab's RAW channel); the server ignores it."""


Message = SyncMessage | AwarenessMessage | QueryAwareness | AuthMessage


def parse(frame: bytes) -> Message:
    """The message in one binary frame, or ``ProtocolError`` naming what is wrong with it."""
    if (
        len(frame) >= 3
        and frame[0] == SYNC
        and frame[1] <= SYNC_UPDATE
        and frame[2] < 0x80
        and len(frame) == 3 + frame[2]
    ):
        # The common case, a room's every keystroke, read without a ``Reader`` (as
        # ``read_message`` would read it): a sync message whose payload is under 128 bytes,
        # its one-byte length exact.
        return SyncMessage(frame[1], frame[3:])
    return read_message(frame)


def read_message(frame: bytes) -> Message:
    """``parse`` without its shortcut: the frame read field by field with a ``Reader``."""
    if not frame:
        raise ProtocolError("empty frame")
    reader = Reader(frame)
    kind = reader.var_uint("message type")
    if kind == SYNC:
        subtype = reader.var_uint("sync message type")
        if subtype not in (SYNC_STEP1, SYNC_STEP2, SYNC_UPDATE):
            raise ProtocolError(f"unknown sync message type {subtype}")
        data = reader.var_bytes("sync payload")
        reader.end("the sync message")
        return SyncMessage(subtype, data)
    if kind == AWARENESS:
        update = reader.var_bytes("awareness update")
        reader.end("the awareness message")
        return AwarenessMessage(update, decode_awareness(update))
    if kind == QUERY_AWARENESS:
        reader.end("the query-awareness message")
        return QueryAwareness()
    if kind == AUTH:
        return AuthMessage()
    raise ProtocolError(f"unknown message type {kind}")


def decode_awareness(update: bytes) -> tuple[tuple[int, int, Any], ...]:
    """The entries of an awareness update; a state of JSON ``null`` is None (client gone)."""
    reader = Reader(update)
    count = reader.var_uint("awareness entry count")
    if count > len(update):  # each entry takes at least three bytes
        raise ProtocolError(f"awareness update announces {count} entries in {len(update)} bytes")
    entries = []
    for _ in range(count):
        client_id = reader.var_uint("awareness client id")
        clock = reader.var_uint("awareness clock")
        text = reader.var_string("awareness state")
        try:
            state = json.loads(text) if text else None
        except ValueError:
            raise ProtocolError("awareness state is not JSON") from None
        if state is not None and not isinstance(state, dict):
            raise ProtocolError("awareness state is not a JSON object or null")
        entries.append((client_id, clock, state))
    reader.end("the awareness update")
    return tuple(entries)


def crdt_refusal(what: str, exc: BaseException) -> ProtocolError | None:
    """The ``ProtocolError`` saying ``what`` was refused, if ``exc`` is pycrdt failing on bytes
    a client sent (its ``ValueError``, or a panic of the Rust library underneath); else None
    (re-raise ``exc``).

    yrs panics on some malformed updates (found by fuzzing: an ``unwrap`` on ``None`` while
    decoding one), and pyo3 raises that as ``pyo3_runtime.PanicException``, a
    ``BaseException`` that no ``except Exception`` catches and that cannot be imported by
    name. The panic happens while the update is decoded, before anything of it is integrated
    (tests/unit/test_fuzz_collab.py checks the document is unchanged), so refusing the frame
    is enough.
    """
    if isinstance(exc, ValueError):
        return ProtocolError(f"{what}: {exc}")
    if type(exc).__module__ == "pyo3_runtime":
        return ProtocolError(f"{what}: the CRDT decoder failed on it ({exc})")
    return None


class crdt_input:  # lower case: it reads as the function it replaced, ``with crdt_input(...)``
    """Around a pycrdt call on bytes a client sent: what ``crdt_refusal`` refuses leaves as a
    ``ProtocolError`` saying ``what`` was refused.

    A class, not ``contextlib.contextmanager``: a generator context manager costs about 1.5 us
    per use, 10 % of a room's whole work per update in ``make bench-collab`` (the per-update
    path, ``Room._apply_client_update``, uses ``crdt_refusal`` in a plain ``try`` instead).
    """

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is not None and (refusal := crdt_refusal(self.what, exc)) is not None:
            raise refusal from None


def encode_awareness(entries: tuple[tuple[int, int, Any], ...]) -> bytes:
    """An awareness update holding ``entries`` (the inverse of ``decode_awareness``)."""
    out = bytearray(pycrdt.write_var_uint(len(entries)))
    for client_id, clock, state in entries:
        text = "null" if state is None else json.dumps(state, separators=(",", ":"))
        data = text.encode()
        out += pycrdt.write_var_uint(client_id) + pycrdt.write_var_uint(clock)
        out += pycrdt.write_var_uint(len(data)) + data
    return bytes(out)


def sync_step1(doc: pycrdt.Doc[Any]) -> bytes:
    """SyncStep1 carrying ``doc``'s state vector."""
    return pycrdt.create_sync_message(doc)


def sync_step2(update: bytes) -> bytes:
    """SyncStep2 carrying ``update``."""
    return bytes((SYNC, SYNC_STEP2)) + pycrdt.write_message(update)


def update_message(update: bytes) -> bytes:
    """A sync Update message carrying ``update``."""
    return pycrdt.create_update_message(update)


def awareness_message(update: bytes) -> bytes:
    """An awareness message carrying ``update``."""
    return pycrdt.create_awareness_message(update)


def permission_denied(reason: str) -> bytes:
    """The auth message refusing something: ``[2, 0, varString(reason)]``."""
    data = reason.encode()
    return bytes((AUTH, PERMISSION_DENIED)) + pycrdt.write_var_uint(len(data)) + data


def ws_frame(payload: bytes) -> bytes:
    """One unmasked, uncompressed binary WebSocket frame (what a server sends) for ``payload``.

    Built once per broadcast: the same bytes go to every receiver's transport. The header is
    written here (RFC 6455 5.2: FIN and the binary opcode, then a 7-bit, 16-bit or 64-bit
    length; a server does not mask) rather than by ``websockets``' ``Frame.serialize``, whose
    checks cost several times more on every update (tests/unit/test_collab_protocol.py
    compares the two at each length boundary).
    """
    length = len(payload)
    if length < 126:
        return bytes((_FIN_BINARY, length)) + payload
    if length < 1 << 16:
        return _HEAD16.pack(_FIN_BINARY, 126, length) + payload
    return _HEAD64.pack(_FIN_BINARY, 127, length) + payload
