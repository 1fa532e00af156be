"""The documentation: the configuration reference matches the settings, README's links resolve.

The site's strict build (``make docs``, run by ``make test``) checks the links between pages;
these tests say the same of the two things a reader meets first, without building the site.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
from markdown.extensions.toc import slugify
from pydantic import BaseModel

from hub import settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
# A Markdown link: [text](target), the target without spaces.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*```")


def _generator() -> ModuleType:
    """docs/tools/config_reference.py, which is a script rather than a package's module."""
    path = DOCS / "tools" / "config_reference.py"
    spec = importlib.util.spec_from_file_location("config_reference", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("config_reference", module)
    spec.loader.exec_module(module)
    return module


def _headings(page: Path) -> list[str]:
    """The anchors of a page's headings, as MkDocs' table of contents makes them."""
    anchors, in_code = [], False
    for line in page.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            anchors.append(slugify(line.lstrip("#").strip().replace("`", ""), "-"))
    return anchors


def _fields() -> list[tuple[str, str | None]]:
    """Every setting as the reference names it, with its environment variable (None for the
    fields of a table, which have none of their own)."""
    fields: list[tuple[str, str | None]] = []
    for name, field in settings.Settings.model_fields.items():
        fields.append((name, f"CHRONOHUB_{name.upper()}"))
        kinds = [field.annotation, *getattr(field.annotation, "__args__", ())]
        for kind in kinds:
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                fields += [(f"{name}.{key}", None) for key in kind.model_fields]
    return fields


def test_the_configuration_reference_is_what_the_settings_say() -> None:
    generator = _generator()
    assert not generator.stale(), f"docs/configuration.md is stale: run {generator.FRESHEN}"


@pytest.mark.parametrize(("name", "variable"), _fields())
def test_the_configuration_reference_lists_every_setting(name: str, variable: str | None) -> None:
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    section = page.partition(f"\n### `{name}`\n")[2].partition("\n### ")[0]
    assert section, f"docs/configuration.md has no heading for {name}"
    if variable is not None:
        assert f"`{variable}`" in section


def test_every_setting_has_a_description() -> None:
    undescribed = [
        name
        for model in (settings.Settings, *(kind for kind in _tables()))
        for name, field in model.model_fields.items()
        if not (field.description or "").strip()
    ]
    assert undescribed == []


def _tables() -> list[type[BaseModel]]:
    return [settings.ServiceConfig, settings.RoleConfig, settings.UpstreamOAuthConfig]


def _links(page: Path) -> list[str]:
    links, in_code = [], False
    for line in page.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_code = not in_code
        elif not in_code:
            links += LINK.findall(line)
    return links


@pytest.mark.parametrize(
    "target", [link for link in _links(ROOT / "README.md") if "://" not in link]
)
def test_readme_links_resolve(target: str) -> None:
    path, _, anchor = target.partition("#")
    assert path.startswith("docs/"), f"README links only into docs/ (the site): {target}"
    page = ROOT / path
    assert page.is_file(), f"README links to {path}, which does not exist"
    if anchor:
        assert anchor in _headings(page), f"{path} has no heading whose anchor is #{anchor}"
