"""Every query in the project's ``.sql`` files prepares against the migrated schema; no name is
defined in two of the hub's files (each subpackage keeps its queries beside the code that runs
them); and every query the code looks up by a literal name exists in the file it loaded, so no
lookup at run time can miss."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from events import sql

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("events", "projections", "collab", "hub")
HUB = ROOT / "hub"
FILES = sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.sql"))
SOURCES = sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))
# Statements on a schema or table named at run time (projections/snapshots.sql: identifiers
# cannot be bind parameters) hold ``{word}``; here they name objects that do not exist, so such
# a statement is checked for its syntax (parsing comes first), and run by its own tests.
TEMPLATE = re.compile(r"(?<!')\{(\w+)\}(?!')")  # not an array literal such as '{ready}'
NOT_THERE = (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError)


def load(path: Path) -> sql.Queries:
    package = ".".join(path.parent.relative_to(ROOT).parts)
    return sql.Queries(package, path.name)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def loaded_files(tree: ast.Module) -> dict[str, tuple[str, str]]:
    """The module's ``name = sql.Queries(package, file)``: name -> (package, file)."""
    found = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
            continue
        call = node.value
        if not (isinstance(call.func, ast.Attribute) and call.func.attr == "Queries"):
            continue
        package, filename = call.args
        if isinstance(package, ast.BoolOp):  # __package__ or "the.package"
            package = package.values[-1]
        assert isinstance(package, ast.Constant)
        assert isinstance(filename, ast.Constant)
        for target in node.targets:
            assert isinstance(target, ast.Name)
            found[target.id] = (package.value, filename.value)
    return found


def module_aliases(tree: ast.Module) -> dict[str, str]:
    """``from a.b import c as d``: d -> a.b.c (the modules a lookup may go through)."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def test_no_query_name_is_in_two_hub_files() -> None:
    seen: dict[str, str] = {}
    for path in (p for p in FILES if p.is_relative_to(HUB)):
        for name in load(path).names():
            assert name not in seen, f"{name} in {seen[name]} and {path}"
            seen[name] = str(path)


def test_every_query_looked_up_by_name_exists() -> None:
    trees = {module_name(path): ast.parse(path.read_text(encoding="utf-8")) for path in SOURCES}
    files = {module: loaded_files(tree) for module, tree in trees.items()}
    names: dict[tuple[str, str], list[str]] = {}
    missing, looked_up = [], 0
    for module, tree in trees.items():
        aliases = module_aliases(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Subscript) or not isinstance(node.slice, ast.Constant):
                continue
            target = node.value
            if isinstance(target, ast.Name):
                source = files[module].get(target.id)
            elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                other = aliases.get(target.value.id)
                source = files.get(other, {}).get(target.attr) if other else None
            else:
                source = None
            if source is None:
                continue
            if source not in names:
                names[source] = sql.Queries(*source).names()
            looked_up += 1
            if node.slice.value not in names[source]:
                missing.append(f"{module}:{node.lineno} {node.slice.value!r} in {source[1]}")
    assert missing == []
    assert looked_up > 150  # the test sees the lookups it is meant to check


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
async def test_every_query_prepares(pool: asyncpg.Pool[Any], path: Path) -> None:
    queries = load(path)
    async with pool.acquire() as conn:
        for name in queries.names():
            text = queries[name]
            templated = TEMPLATE.search(text) is not None
            if templated:
                text = TEMPLATE.sub(lambda m: f'"sql_check_{m[1]}"', text)
            try:
                await conn.prepare(text)
            except NOT_THERE:
                if not templated:
                    raise
            except asyncpg.PostgresError as exc:
                pytest.fail(f"{queries.source} {name}: {exc}")
