"""``publish.toml``: what a project publishes (branch, paths, dashboards). Pure: no I/O."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

FILE_NAME = "publish.toml"
DURATION = re.compile(r"^(\d+)\s*(s|m|h|d)$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
PARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
Value = bool | int | float | str


class ManifestError(ValueError):
    """A ``publish.toml`` that cannot be used; the message names the problem."""


@dataclass(frozen=True)
class Dashboard:
    """A notebook run at each push (and on a schedule) and published with its outputs."""

    path: str
    hide_code: bool = False
    refresh_s: int | None = None
    timeout_s: int = 120
    memory_mb: int = 2048
    parameters: dict[str, Value] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """A project's publishing settings."""

    branch: str
    paths: tuple[str, ...] = ("*",)
    dashboards: tuple[Dashboard, ...] = ()

    def publishes(self, path: str) -> bool:
        """Whether ``path`` (a file of the commit) is published."""
        if path == FILE_NAME:
            return False
        return any(fnmatch.fnmatchcase(path, pattern) for pattern in self.paths)

    def dashboard(self, path: str) -> Dashboard | None:
        """The dashboard at ``path``, if it is one."""
        return next((d for d in self.dashboards if d.path == path), None)


def duration(raw: Any, where: str) -> int:
    """``"90s"``, ``"15m"``, ``"1h"``, ``"2d"`` in seconds."""
    match = DURATION.match(raw) if isinstance(raw, str) else None
    if match is None or int(match[1]) == 0:
        raise ManifestError(f'{where}: a duration such as "30m" or "1h" is expected, got {raw!r}')
    return int(match[1]) * UNITS[match[2]]


def _expect(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = table[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ManifestError(f"{where}.{key}: {names} expected, got {value!r}")
    return value


def _unknown(table: dict[str, Any], known: set[str], where: str) -> None:
    extra = sorted(set(table) - known)
    if extra:
        raise ManifestError(
            f"{where}: unknown key {extra[0]!r} (known: {', '.join(sorted(known))})"
        )


def _dashboard(raw: Any, index: int) -> Dashboard:
    where = f"dashboards[{index}]"
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: a table is expected")
    _unknown(raw, {"path", "hide_code", "refresh", "timeout", "memory_mb", "parameters"}, where)
    if "path" not in raw:
        raise ManifestError(f"{where}: path is missing")
    path = _expect(raw, "path", str, where)
    if not path.endswith(".ipynb"):
        raise ManifestError(f"{where}.path: a notebook (.ipynb) is expected, got {path!r}")
    parameters = raw.get("parameters", {})
    if not isinstance(parameters, dict):
        raise ManifestError(f"{where}.parameters: a table of defaults is expected")
    for name, value in parameters.items():
        if not PARAMETER_NAME.match(name):
            raise ManifestError(f"{where}.parameters: {name!r} is not a Python name")
        if not isinstance(value, bool | int | float | str):
            raise ManifestError(
                f"{where}.parameters.{name}: a string, number or boolean default is expected"
            )
    memory = _expect(raw, "memory_mb", int, where) if "memory_mb" in raw else 2048
    if memory < 256:
        raise ManifestError(f"{where}.memory_mb: at least 256 is needed, got {memory}")
    return Dashboard(
        path=path,
        hide_code=_expect(raw, "hide_code", bool, where) if "hide_code" in raw else False,
        refresh_s=duration(raw["refresh"], f"{where}.refresh") if "refresh" in raw else None,
        timeout_s=duration(raw["timeout"], f"{where}.timeout") if "timeout" in raw else 120,
        memory_mb=memory,
        parameters=dict(parameters),
    )


def parse(text: str, default_branch: str) -> Manifest:
    """The manifest in ``text``; ``ManifestError`` naming what is wrong."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{FILE_NAME} is not valid TOML: {exc}") from exc
    _unknown(raw, {"branch", "paths", "dashboards"}, FILE_NAME)
    branch = _expect(raw, "branch", str, FILE_NAME) if "branch" in raw else default_branch
    paths = raw.get("paths", ["*"])
    if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
        raise ManifestError(f'{FILE_NAME}.paths: a list of patterns is expected, e.g. ["*.ipynb"]')
    dashboards = raw.get("dashboards", [])
    if not isinstance(dashboards, list):
        raise ManifestError(f"{FILE_NAME}.dashboards: an array of tables is expected")
    parsed = tuple(_dashboard(d, i) for i, d in enumerate(dashboards))
    seen = [d.path for d in parsed]
    if len(set(seen)) != len(seen):
        raise ManifestError(f"{FILE_NAME}.dashboards: a notebook is named twice")
    return Manifest(branch=branch, paths=tuple(paths), dashboards=parsed)


class ParameterError(ValueError):
    """A query string's parameter that the dashboard does not declare or cannot take."""


def parameters_of(dashboard: Dashboard, query: dict[str, str]) -> dict[str, Value]:
    """The overrides a query string asks for, each coerced to its default's type.

    Only declared names are accepted: papermill turns values into source code, so a name
    or a value of the wrong type is refused rather than injected.
    """
    chosen: dict[str, Value] = {}
    for name, raw in sorted(query.items()):
        if name not in dashboard.parameters:
            known = ", ".join(sorted(dashboard.parameters)) or "none"
            raise ParameterError(f"unknown parameter {name!r} (this dashboard takes: {known})")
        default = dashboard.parameters[name]
        try:
            value: Value
            if isinstance(default, bool):
                if raw.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(raw)
                value = raw.lower() in ("true", "1")
            elif isinstance(default, int):
                value = int(raw)
            elif isinstance(default, float):
                value = float(raw)
            else:
                value = raw
        except ValueError as exc:
            kind = type(default).__name__
            raise ParameterError(f"parameter {name!r}: {kind} expected, got {raw!r}") from exc
        if value != default:
            chosen[name] = value
    return chosen
