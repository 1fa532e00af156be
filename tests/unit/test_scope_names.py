"""Scope names written in code are checked against the scope table when their module is
imported: a misspelt one fails at start-up, not as a 500 at the first request that checks it."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

from hub.api import openapi
from hub.auth import scope_table, scopes

HUB = Path(__file__).resolve().parents[2] / "hub"
# The calls that take scope names, and which of their positional arguments are scopes.
SCOPE_CALLS = {"require": 2, "require_list": 1, "allows": 0, "holds": 0, "filters": 0}


def test_known_returns_a_defined_name() -> None:
    assert scope_table.known("read:users") == "read:users"


def test_known_refuses_an_unknown_name() -> None:
    with pytest.raises(scopes.ScopeError, match="'read:usres' does not exist"):
        scope_table.known("read:usres")


def test_a_misspelt_constant_fails_when_its_module_is_imported(tmp_path: Path) -> None:
    source = tmp_path / "misspelt_scope.py"
    source.write_text(
        "from hub.auth import scope_table\nREAD = scope_table.known('raed:users')\n",
        encoding="utf-8",
    )
    spec = importlib.util.spec_from_file_location("misspelt_scope", source)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with pytest.raises(scopes.ScopeError, match="raed:users"):
        spec.loader.exec_module(module)
    assert "misspelt_scope" not in sys.modules


def test_an_operation_with_a_misspelt_scope_fails_when_defined() -> None:
    with pytest.raises(scopes.ScopeError):
        openapi.Operation("get", "/users", "List users", "list:usres")


def _literal_scope_arguments(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        at = SCOPE_CALLS.get(node.func.attr)
        if at is None or len(node.args) <= at:
            continue
        argument = node.args[at]
        values = argument.elts if isinstance(argument, ast.List | ast.Tuple) else [argument]
        found += [
            f"{path.relative_to(HUB.parent)}:{node.lineno} {value.value!r}"
            for value in values
            if isinstance(value, ast.Constant) and isinstance(value.value, str)
        ]
    return found


def test_no_handler_checks_a_scope_spelt_as_a_literal() -> None:
    checked = [
        p for p in sorted(HUB.rglob("*.py")) if p.name not in ("scopes.py", "scope_table.py")
    ]
    literals = [hit for path in checked for hit in _literal_scope_arguments(path)]
    assert literals == [], "use scope_table's constants: " + ", ".join(literals)
