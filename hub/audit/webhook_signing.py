"""How a webhook delivery is signed, Stripe's way: the timestamp is part of what is signed.

``X-Chronohub-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>``, where
``<timestamp>`` is the ``X-Chronohub-Timestamp`` header (Unix seconds at the attempt). Signing
the time as well as the body lets a receiver refuse a captured delivery replayed later
(GitHub signs the body alone, which a replay passes). Each attempt is signed afresh.
Pure: no I/O; docs/webhooks.md shows a receiver's side.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE = "X-Chronohub-Signature"
TIMESTAMP = "X-Chronohub-Timestamp"
EVENT = "X-Chronohub-Event"
DELIVERY = "X-Chronohub-Delivery"
TOLERANCE_S = 300
"""How old a timestamp a receiver should accept (Stripe's default)."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Chronohub-Signature`` value of ``body`` sent at ``timestamp``."""
    signed = f"{timestamp}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def verify(
    secret: str, headers: dict[str, str], body: bytes, now: float, tolerance_s: float = TOLERANCE_S
) -> bool:
    """Whether ``body`` with these headers was signed with ``secret`` within ``tolerance_s``
    of ``now`` (what a receiver does; the hub's tests use it)."""
    try:
        timestamp = int(headers[TIMESTAMP])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    given = headers.get(SIGNATURE, "")
    return hmac.compare_digest(given, signature(secret, timestamp, body))


def headers(
    secret: str, timestamp: int, body: bytes, event_type: str, delivery: str
) -> dict[str, str]:
    """The headers of one attempt to deliver ``body`` (an event of ``event_type`` whose
    public id is ``delivery``)."""
    return {
        "Content-Type": "application/json",
        EVENT: event_type,
        DELIVERY: delivery,
        TIMESTAMP: str(timestamp),
        SIGNATURE: signature(secret, timestamp, body),
    }
