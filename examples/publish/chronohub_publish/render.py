"""Files of a commit as HTML: notebooks through nbconvert (outputs kept, images inline, a table
of contents), markdown through mistune, everything else as it is.

No sanitiser: nbconvert's own escapes ordinary markdown into visible markup, and an
allow-list would strip the styles and SVG that make a notebook readable. The pages are
served instead under ``Content-Security-Policy: sandbox`` with no ``allow-scripts`` (see
``web.py``): whatever the HTML holds, the browser runs no script of it, and the document gets
an opaque origin (no cookie, no storage, no same-origin request to the hub). Outputs that are
script by definition (JavaScript, widget views) are dropped before rendering, so the page
does not show their source as if it were content.
"""

from __future__ import annotations

import html
import re
import threading
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import mistune
import nbformat
from nbconvert import HTMLExporter

# Bumped when the HTML changes, so a cached rendering of an unchanged blob is made again.
RENDERER = "1"
SCRIPT_OUTPUTS = (
    "application/javascript",
    "text/javascript",
    "application/vnd.jupyter.widget-view+json",
    "application/vnd.jupyter.widget-state+json",
)
_local = threading.local()


def html_name(path: str) -> str:
    """Where the HTML of ``path`` is served: ``a/b.ipynb`` and ``a/b.md`` as ``a/b.html``."""
    for suffix in (".ipynb", ".md"):
        if path.endswith(suffix):
            return path[: -len(suffix)] + ".html"
    return path


def renders(path: str) -> bool:
    """Whether ``path`` is rendered (notebooks, markdown) rather than served as it is."""
    return path.endswith((".ipynb", ".md"))


def _exporter(hide_code: bool) -> HTMLExporter:
    # One exporter per thread and option: building one loads its templates (~50 ms).
    key = f"exporter_{hide_code}"
    exporter = getattr(_local, key, None)
    if exporter is None:
        exporter = HTMLExporter(  # type: ignore[no-untyped-call]
            template_name="lab", embed_images=True
        )
        exporter.exclude_input = hide_code
        exporter.exclude_input_prompt = hide_code
        exporter.exclude_output_prompt = hide_code
        setattr(_local, key, exporter)
    return exporter


def without_script(nb: Any) -> Any:
    """``nb`` with its script outputs (JavaScript, widgets) removed."""
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data")
            if data is not None:
                for kind in SCRIPT_OUTPUTS:
                    data.pop(kind, None)
    nb.metadata.pop("widgets", None)
    return nb


class _Headings(HTMLParser):
    """The headings (h1-h3) with an ``id`` of an HTML page, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[int, str, str]] = []
        self._open: tuple[int, str] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("h1", "h2", "h3"):
            anchor = dict(attrs).get("id")
            if anchor:
                self._open, self._text = (int(tag[1]), anchor), []

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag == f"h{self._open[0]}":
            text = "".join(self._text).replace("¶", "").strip()
            self.found.append((self._open[0], self._open[1], text))
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open:
            self._text.append(data)


def table_of_contents(page: str) -> str:
    """A ``<nav>`` listing the page's headings as links (empty if it has none)."""
    parser = _Headings()
    parser.feed(page)
    if not parser.found:
        return ""
    items = "".join(
        f'<li class="toc-h{level}"><a href="#{html.escape(anchor)}">{html.escape(text)}</a></li>'
        for level, anchor, text in parser.found
    )
    return (
        '<nav class="publish-toc" aria-label="Contents"><strong>Contents</strong>'
        f"<ul>{items}</ul></nav>"
    )


_BODY = re.compile(r"<body[^>]*>", re.IGNORECASE)
TOC_STYLE = (
    "<style>.publish-toc{border:1px solid #ddd;padding:.5em 1em;margin:1em;max-width:40em}"
    ".publish-toc ul{margin:.3em 0;padding-left:1.2em}.toc-h2{margin-left:1em}"
    ".toc-h3{margin-left:2em}.publish-banner{background:#fee;border:1px solid #c00;"
    "padding:.5em 1em;margin:1em}</style>"
)


def with_toc(page: str, banner: str = "") -> str:
    """``page`` with a table of contents (and ``banner``) at the top of its body."""
    toc = table_of_contents(page)
    match = _BODY.search(page)
    if match is None:
        return TOC_STYLE + banner + toc + page
    at = match.end()
    return page[:at] + TOC_STYLE + banner + toc + page[at:]


def with_banner(page: str, banner: str) -> str:
    """``page`` with ``banner`` at the top of its body."""
    match = _BODY.search(page)
    at = match.end() if match else 0
    return page[:at] + banner + page[at:]


def notebook(source: bytes | Any, base: Path | None, *, hide_code: bool = False) -> str:
    """A notebook (its JSON, or a ``NotebookNode``) as a page; images inline (relative
    ones read from ``base``, the commit's files, when given)."""
    nb = (
        nbformat.reads(source.decode(), as_version=4)  # type: ignore[no-untyped-call]
        if isinstance(source, bytes)
        else source
    )
    resources: dict[str, Any] = {"metadata": {"path": str(base)}} if base else {}
    body, _ = _exporter(hide_code).from_notebook_node(without_script(nb), resources=resources)
    return body


class _Anchors(mistune.HTMLRenderer):
    def heading(self, text: str, level: int, **attrs: Any) -> str:
        anchor = re.sub(r"[^\w-]+", "-", re.sub(r"<[^>]+>", "", text).strip().lower()).strip("-")
        return f'<h{level} id="{anchor}">{text}</h{level}>\n'


_markdown_with_ids = mistune.create_markdown(
    escape=False,
    renderer=_Anchors(escape=False),
    plugins=["table", "strikethrough", "footnotes", "task_lists"],
)


def markdown(source: bytes, title: str) -> str:
    """A markdown file as a page."""
    body = _markdown_with_ids(source.decode(errors="replace"))
    return page(title, str(body))


def page(title: str, body: str) -> str:
    """A minimal HTML page."""
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head><body>{body}</body></html>"
    )
