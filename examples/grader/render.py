"""A student's notebook as HTML, and the headers that keep it from running in our pages.

A submitted notebook is the student's HTML: markdown with ``<script>``, HTML and JavaScript
outputs. It is converted with nbconvert as it is, and served only from its own URL with a
``Content-Security-Policy: sandbox`` that allows nothing (no scripts, an opaque origin that
cannot read the grader's cookies or pages), shown in an ``<iframe sandbox>``. The grading
page itself never contains a byte of it. (nbconvert's ``sanitize_html`` escapes common
markup such as headings and images; the sandbox keeps them and is the stronger guarantee.)
"""

from __future__ import annotations

import json
from typing import Any

# The rendered notebook: nothing may run, nothing may be fetched but inline styles and images
# (nbconvert inlines both), and only our own pages may frame it.
NOTEBOOK_HEADERS = {
    "Content-Security-Policy": (
        "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:;"
        " font-src data:; frame-ancestors 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# Our own pages: our script only (it shows times in the viewer's time zone), never framed.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
        " frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self';"
        " frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class NotANotebook(ValueError):
    """The file is not a notebook nbformat can read."""


def notebook_html(raw: bytes) -> str:
    """The notebook ``raw`` (``.ipynb`` bytes) as a standalone HTML document."""
    # imported here: nbconvert takes seconds to import, and only these pages need it
    import nbconvert
    import nbformat

    try:
        node: Any = nbformat.reads(raw.decode("utf-8"), as_version=4)  # type: ignore[no-untyped-call]
    except (
        UnicodeDecodeError,
        json.JSONDecodeError,
        nbformat.reader.NotJSONError,
        nbformat.ValidationError,
    ) as exc:
        raise NotANotebook(str(exc)) from exc
    exporter = nbconvert.HTMLExporter(template_name="classic", embed_images=True)  # type: ignore[no-untyped-call]
    body, _ = exporter.from_notebook_node(node)
    return str(body)
