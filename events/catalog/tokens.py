"""Events of API tokens (stream ``token-<token_id>``). The token itself never enters the log."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID

from pydantic import Field

from events import models


class TokenIssued(models.Event):
    """An API token was issued to a user or a service (its hash is kept outside the log)."""

    type: ClassVar[str] = "token.issued"

    token_id: str = Field(min_length=1, max_length=64)
    user_id: UUID | None = None
    service: str | None = None
    owner_name: str
    scopes: list[str]
    note: str | None = Field(default=None, max_length=1000)
    expires_at: datetime | None = None
    oauth_client: str | None = Field(
        default=None,
        max_length=255,
        description="The OAuth client it was issued to (none for tokens issued by the API)",
    )


class TokenRevoked(models.Event):
    """An API token was revoked."""

    type: ClassVar[str] = "token.revoked"

    token_id: str = Field(min_length=1, max_length=64)
    reason: Literal["revoked", "owner_deleted", "replaced"] = "revoked"


def stream_id(token_id: str) -> str:
    """The stream that holds one token's events."""
    return f"token-{token_id}"
