"""Awareness between hub processes: the NOTIFY payloads that carry it, and the pure rules.

Each state a client sends with a ``user`` is stamped with the name its connection authenticated
as (``stamp``: ``user.name``, and JupyterLab's ``username``, ``display_name``, ``initials``)
before anyone sees it, so a cursor cannot claim to be someone else's; its colours must be
plain colours, as clients put them in ``style`` attributes.

Awareness (cursors, names, selections) is ephemeral: it is never stored, it travels in the
NOTIFY payload itself, on the collab channel, as a JSON object. A bare room name on that
channel is a document wake-up (collab/relay.py); a room name cannot start with ``{``, so the
two never mix::

    {"room": "<name>", "awareness": "<base64 of a y-protocols awareness update>"}
    {"room": "<name>", "query": true}     # "send me the states of your connections"

An update whose payload would exceed PostgreSQL's NOTIFY limit (``notify.MAX_PAYLOAD_BYTES``)
is not relayed; a process that holds several states splits them (``fit``) so that only a
single state over the limit stays home. States learnt from another process expire when not
renewed within the timeout (``outdated``): a process that dies leaves no ghost cursors.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from collab import errors, protocol
from events import notify

# y-protocols' outdatedTimeout: clients renew their state every 15 s, and drop peers not
# renewed within 30 s.
OUTDATED_S = 30.0


class BadPayload(errors.CollabError):
    """A notification on the collab channel that is not a valid awareness payload."""


@dataclass(frozen=True, slots=True)
class Relayed:
    """Awareness states from another process's connections to ``room``."""

    room: str
    update: bytes


@dataclass(frozen=True, slots=True)
class Query:
    """Another process opened ``room`` and asks for the states of our connections to it."""

    room: str


Message = Relayed | Query


def is_awareness(payload: str) -> bool:
    """Whether a collab-channel payload is an awareness message (else: a room wake-up)."""
    return payload.startswith("{")


def encode_update(room: str, update: bytes) -> str | None:
    """The payload relaying ``update`` of ``room``, or None if it is over NOTIFY's limit."""
    payload = json.dumps(
        {"room": room, "awareness": base64.b64encode(update).decode("ascii")},
        separators=(",", ":"),
    )
    return payload if len(payload.encode()) <= notify.MAX_PAYLOAD_BYTES else None


def encode_query(room: str) -> str:
    """The payload asking other processes for their connections' states in ``room``."""
    return json.dumps({"room": room, "query": True}, separators=(",", ":"))


def decode(payload: str) -> Message:
    """The message in a payload, or ``BadPayload`` naming what is wrong with it. The update's
    entries are checked (a relayed update is applied only if it decodes)."""
    try:
        data = json.loads(payload)
    except ValueError:
        raise BadPayload("awareness payload is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("room"), str):
        raise BadPayload("awareness payload is not an object with a room name")
    room = data["room"]
    if data.get("query") is True and set(data) == {"room", "query"}:
        return Query(room)
    if set(data) != {"room", "awareness"} or not isinstance(data["awareness"], str):
        raise BadPayload("awareness payload holds neither an update nor a query")
    try:
        update = base64.b64decode(data["awareness"], validate=True)
    except (binascii.Error, ValueError):
        raise BadPayload("awareness payload's update is not base64") from None
    try:
        protocol.decode_awareness(update)
    except errors.ProtocolError as exc:
        raise BadPayload(f"awareness payload's update does not decode: {exc}") from None
    return Relayed(room, update)


def fit(
    client_ids: Sequence[int], encode: Callable[[Sequence[int]], str | None]
) -> tuple[list[str], list[int]]:
    """Payloads for the states of ``client_ids``, halving the set until each fits, and the
    ids whose state alone does not fit (not relayed)."""
    if not client_ids:
        return [], []
    payload = encode(client_ids)
    if payload is not None:
        return [payload], []
    if len(client_ids) == 1:
        return [], [client_ids[0]]
    half = len(client_ids) // 2
    first, first_left = fit(client_ids[:half], encode)
    second, second_left = fit(client_ids[half:], encode)
    return first + second, first_left + second_left


# A colour is drawn by clients inside a ``style`` attribute (y-codemirror.next's carets and
# selections, JupyterLab's cursors): anything but a plain colour would be injected CSS.
# JupyterLab's own colours are its stylesheet's variables.
COLOUR = re.compile(
    r"#(?:[0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})|var\(--jp-collaborator-color[1-9]\)"
)
COLOUR_FIELDS = ("color", "colorLight")
# JupyterLab shows these rather than ``name``: set to the authenticated name when present.
NAME_FIELDS = ("username", "display_name")
# Not vouched for by the hub: an avatar could show someone else's face.
DROPPED_FIELDS = ("avatar_url",)


def initials(name: str) -> str:
    """What JupyterLab shows in a collaborator's badge: the first letter of up to two words."""
    words = name.replace("-", " ").replace("_", " ").replace(".", " ").split()
    return "".join(word[0] for word in words[:2]).upper() or name[:1].upper()


def stamped_user(user: object, name: str) -> dict[str, Any]:
    """``user`` with ``name`` as every name it shows (``name`` always; ``username``,
    ``display_name`` and ``initials`` when given), colours kept only if plain colours
    (``COLOUR``), no ``avatar_url``. Pure."""
    claimed: dict[str, Any] = user if isinstance(user, dict) else {}
    out = {
        key: value
        for key, value in claimed.items()
        if key not in DROPPED_FIELDS
        and (key not in COLOUR_FIELDS or (isinstance(value, str) and COLOUR.fullmatch(value)))
    }
    out["name"] = name
    for key in NAME_FIELDS:
        if key in out:
            out[key] = name
    if "initials" in out:
        out["initials"] = initials(name)
    return out


def stamp(
    entries: tuple[tuple[int, int, Any], ...], name: str
) -> tuple[tuple[int, int, Any], ...] | None:
    """``entries`` with every state's ``user`` stamped (``stamped_user``: the name the hub
    authenticated, whatever the client claimed, in every field that shows a name, and no
    colour that is not a colour), or None when every state already says so. Pure. A state
    without ``user`` claims no one and stays as it is, as does a removal (state None)."""
    changed = False
    stamped = []
    for client_id, clock, state in entries:
        if state is not None and "user" in state:
            user = stamped_user(state["user"], name)
            if user != state["user"]:
                state = {**state, "user": user}
                changed = True
        stamped.append((client_id, clock, state))
    return tuple(stamped) if changed else None


def outdated(renewed: Mapping[int, float], now: float, timeout_s: float = OUTDATED_S) -> list[int]:
    """The remote states to drop: those last renewed ``timeout_s`` or more before ``now``."""
    return sorted(client_id for client_id, at in renewed.items() if now - at >= timeout_s)
