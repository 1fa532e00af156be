"""The names users and groups may have, shared by events and the API."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

# User and group names appear in URLs (/user/<name>/) and in scope filters (!user=<name>):
# no slash, no whitespace or control characters, no '!' or '=' (filter syntax).
NAME_PATTERN = r"^[^/\s!=\x00-\x1f\x7f]{1,255}$"


def _not_a_path_step(name: str) -> str:
    if name in (".", ".."):
        raise ValueError("a name cannot be '.' or '..'")
    return name


Name = Annotated[
    str, Field(min_length=1, max_length=255, pattern=NAME_PATTERN), AfterValidator(_not_a_path_step)
]
