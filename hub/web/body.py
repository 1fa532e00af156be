"""Request bodies: JSON parsed and validated by a pydantic model, or 400 naming the field; and
JupyterHub's timestamp format for the times in replies (``iso``).

Nothing is written before a body has been validated whole, so a bad request never leaves
half a change behind.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, TypeVar

import pydantic
from aiohttp import web

from events.catalog.names import Name
from hub import errors

ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)

NAME_ADAPTER: pydantic.TypeAdapter[str] = pydantic.TypeAdapter(Name)


def valid_name(name: str, what: str) -> str:
    """``name`` if it is a valid user or group name, else 400 ("Invalid <what>: ...")."""
    try:
        return NAME_ADAPTER.validate_python(name)
    except ValueError as exc:
        raise errors.BadRequest(f"Invalid {what}: {name!r}") from exc


async def parse(request: web.Request, model: type[ModelT], *, allow_empty: bool = False) -> ModelT:
    """The request's JSON body as ``model``; an empty body is ``{}`` when ``allow_empty``."""
    data = await read_json(request)
    if data is None:
        if allow_empty:
            return model.model_validate({})
        raise errors.BadRequest("a JSON body is required")
    return validate(model, data)


async def read_json(request: web.Request) -> Any:
    """The request's JSON body, None if empty; 400 if it is not JSON or holds a NUL character.

    PostgreSQL text cannot hold NUL, so it is refused here rather than failing at the database.
    """
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise errors.BadRequest(f"the body is not valid JSON: {exc}") from exc
    if _has_nul(data):
        raise errors.BadRequest("the body holds a NUL character (\\u0000), which is not allowed")
    return data


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def validate(model: type[ModelT], data: Any) -> ModelT:
    """``data`` as ``model``, or 400 with a message naming each field at fault."""
    if not isinstance(data, dict):
        raise errors.BadRequest(f"the body must be a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise errors.BadRequest(describe(exc)) from exc


def describe(exc: pydantic.ValidationError) -> str:
    """A one-line account of what is wrong, field by field."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "body"
        if error["type"] == "extra_forbidden":
            parts.append(f"{where}: unknown field")
        else:
            parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def iso(value: datetime | None) -> str | None:
    """JupyterHub's timestamp format: ISO 8601 in UTC with a ``Z``."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
