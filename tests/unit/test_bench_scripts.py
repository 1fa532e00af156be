"""The benchmarks run as modules (``python -m bench.<name>``), never as ``python bench/<name>.py``:
a script run by path puts ``bench/`` first on the import path, and ``bench/collab.py`` (the name
the collaboration issue gives its benchmark) would then hide the ``collab`` package from every
benchmark that imports the hub (it once broke ``make bench-audit`` that way)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _bench_recipes() -> dict[str, str]:
    """Each ``bench-*`` target of the Makefile and its recipe's command lines."""
    recipes: dict[str, str] = {}
    target = None
    for line in (ROOT / "Makefile").read_text().splitlines():
        head = re.match(r"^(bench-[a-z]+):", line)
        if head:
            target = head.group(1)
            recipes[target] = ""
        elif target and line.startswith("\t"):
            recipes[target] += line.strip() + "\n"
        else:
            target = None
    return recipes


def test_every_benchmark_target_runs_its_script_as_a_module() -> None:
    recipes = _bench_recipes()
    assert set(recipes) == {
        "bench-events",
        "bench-api",
        "bench-audit",
        "bench-spawn",
        "bench-collab",
        "bench-git",
        "bench-publish",
        "bench-browser",
        "bench-scale",
    }
    for target, recipe in recipes.items():
        module = re.search(r"python -m bench\.([a-z_]+)", recipe)
        assert module, f"{target} does not run python -m bench.<name>: {recipe!r}"
        assert (ROOT / "bench" / f"{module.group(1)}.py").is_file(), target
        assert "bench/" not in recipe.replace("bench/collab_node", ""), recipe


def test_the_collab_benchmark_has_the_name_its_issue_gives_it() -> None:
    recipes = _bench_recipes()
    assert "python -m bench.collab\n" in recipes["bench-collab"]
