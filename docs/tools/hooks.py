"""MkDocs hooks (``hooks:`` in mkdocs.yml): README as the site's home page, the reference
deployments' READMEs as pages (their links into docs/ made site links), and a check that
the configuration reference is current.

README.md is the page a newcomer reads first, in the repository; it is also the site's home
page, so it is written once. Its links into ``docs/`` are rewritten to site links, so the
strict build checks them (and their anchors) like any page's.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import config_reference
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
# Each reference deployment's README (deploy/<name>/README.md), written for the administrator
# beside its files, is also the site's page deploy/<name>.md.
DEPLOY = ROOT / "deploy"
# A Markdown link target that starts with docs/: ](docs/page.md#anchor)
_DOCS_LINK = re.compile(r"\]\(docs/")
# The same from a deployment's README, two folders down: ](../../docs/page.md#anchor)
_DEPLOY_DOCS_LINK = re.compile(r"\]\(\.\./\.\./docs/")


def on_pre_build(config: MkDocsConfig, **kwargs: Any) -> None:
    """Refuse to build from a configuration reference that the settings no longer match."""
    if config_reference.stale():
        raise PluginError(
            f"docs/configuration.md does not match hub/settings.py: run {config_reference.FRESHEN}"
        )


def on_files(files: Files, config: MkDocsConfig, **kwargs: Any) -> Files:
    """Add README.md as the site's index page, its links into docs/ made relative to the site."""
    text = _DOCS_LINK.sub("](", README.read_text(encoding="utf-8"))
    files.append(File.generated(config, "index.md", content=text))
    for readme in sorted(DEPLOY.glob("*/README.md")):
        page = f"deploy/{readme.parent.name}.md"
        # its links into docs/ work in the repository; on the site, docs/ is one folder up
        text = _DEPLOY_DOCS_LINK.sub("](../", readme.read_text(encoding="utf-8"))
        files.append(File.generated(config, page, content=text))
    return files
