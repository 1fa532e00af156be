"""The benchmark scripts run as ``python bench/<name>.py``, which puts ``bench/`` first on the
import path: a script named like one of chronohub's packages would hide that package from
every other benchmark (``bench/collab.py`` once broke ``make bench-audit`` that way)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_no_benchmark_script_is_named_like_a_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = set(pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])
    assert "collab" in packages
    scripts = {path.stem for path in (ROOT / "bench").glob("*.py")}
    assert scripts, "no benchmark scripts found"
    assert not scripts & packages
