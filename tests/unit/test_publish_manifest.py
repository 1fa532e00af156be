"""The publishing service's pure parts: publish.toml, query-string parameters, papermill-style
injection, the table of contents."""

from __future__ import annotations

import nbformat
import pytest
from chronohub_publish import dashboards, execute, manifest, render

GOOD = """
branch = "pages"
paths = ["*.ipynb", "docs/*"]

[[dashboards]]
path = "dash.ipynb"
hide_code = true
refresh = "1h"
timeout = "90s"
memory_mb = 512
parameters = { n = 3, rate = 0.5, label = "x", smooth = false }
"""


def test_a_manifest_is_read_with_its_defaults() -> None:
    parsed = manifest.parse(GOOD, "main")
    assert parsed.branch == "pages"
    [dash] = parsed.dashboards
    assert (dash.hide_code, dash.refresh_s, dash.timeout_s, dash.memory_mb) == (
        True, 3600, 90, 512,
    )  # fmt: skip
    assert parsed.publishes("a.ipynb")
    assert parsed.publishes("docs/x/y.md")
    assert not parsed.publishes("secret.py")
    assert not parsed.publishes("publish.toml")
    empty = manifest.parse("", "trunk")
    assert (empty.branch, empty.paths, empty.dashboards) == ("trunk", ("*",), ())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("branch = ", "not valid TOML"),
        ("colour = 'red'", "unknown key 'colour'"),
        ("branch = 3", "publish.toml.branch: str expected"),
        ("paths = 'x'", "a list of patterns"),
        ("dashboards = 1", "an array of tables"),
        ("[[dashboards]]\nhide_code = true", "dashboards[0]: path is missing"),
        ("[[dashboards]]\npath = 'a.py'", "a notebook (.ipynb) is expected"),
        ("[[dashboards]]\npath = 'a.ipynb'\nrefresh = 'soon'", 'a duration such as "30m"'),
        ("[[dashboards]]\npath = 'a.ipynb'\nrefresh = '0h'", "a duration"),
        ("[[dashboards]]\npath = 'a.ipynb'\nmemory_mb = 10", "at least 256"),
        ("[[dashboards]]\npath = 'a.ipynb'\nmemory_mb = true", "int expected"),
        ("[[dashboards]]\npath = 'a.ipynb'\nparameters = { 'a b' = 1 }", "not a Python name"),
        ("[[dashboards]]\npath = 'a.ipynb'\nparameters = { a = [1] }", "a string, number or"),
        ("[[dashboards]]\npath = 'a.ipynb'\nkernel = 'r'", "unknown key 'kernel'"),
        ("[[dashboards]]\npath = 'a.ipynb'\n[[dashboards]]\npath = 'a.ipynb'", "named twice"),
    ],
)
def test_a_bad_manifest_is_refused_naming_the_problem(text: str, message: str) -> None:
    with pytest.raises(manifest.ManifestError) as caught:
        manifest.parse(text, "main")
    assert message in str(caught.value)


def test_parameters_are_declared_names_coerced_to_their_defaults_types() -> None:
    [dash] = manifest.parse(GOOD, "main").dashboards
    got = manifest.parameters_of(dash, {"n": "5", "rate": "2", "label": "y", "smooth": "true"})
    assert got == {"n": 5, "rate": 2.0, "label": "y", "smooth": True}
    assert manifest.parameters_of(dash, {"n": "3"}) == {}  # a default is no override
    for query, message in (
        ({"m": "1"}, "unknown parameter 'm' (this dashboard takes: label, n, rate, smooth)"),
        ({"n": "five"}, "parameter 'n': int expected, got 'five'"),
        ({"rate": "fast"}, "parameter 'rate': float expected"),
        ({"smooth": "maybe"}, "parameter 'smooth': bool expected"),
    ):
        with pytest.raises(manifest.ParameterError) as caught:
            manifest.parameters_of(dash, query)
        assert message in str(caught.value)
    assert dashboards.parameter_key({}) == "default"
    assert dashboards.parameter_key({"a": 1, "b": 2}) == dashboards.parameter_key({"b": 2, "a": 1})


def test_parameters_are_injected_after_the_parameters_cell_papermill_style() -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Title"),
        nbformat.v4.new_code_cell("n = 3", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print(n)"),
    ]
    out = execute.inject(nb, {"n": 5, "label": "it's"})
    assert [c.metadata.get("tags", []) for c in out.cells] == [
        [], ["parameters"], ["injected-parameters"], [],
    ]  # fmt: skip
    assert out.cells[2].source == '# Parameters\nn = 5\nlabel = "it\'s"\n'
    again = execute.inject(out, {"n": 6})  # a re-run replaces the injected cell
    assert [c.source for c in again.cells].count("# Parameters\nn = 6\n") == 1
    assert len(again.cells) == 4
    bare = nbformat.v4.new_notebook()
    bare.cells = [nbformat.v4.new_code_cell("print(1)")]
    assert execute.inject(bare, {"n": 1}).cells[0].metadata["tags"] == ["injected-parameters"]


def test_pages_get_a_table_of_contents_and_their_served_names() -> None:
    page = render.markdown(b"# One\n\ntext\n\n## Two *b*\n\n#### deep\n", "a.md")
    with_toc = render.with_toc(page)
    assert '<a href="#one">One</a>' in with_toc
    assert '<a href="#two-b">Two b</a>' in with_toc
    assert "deep</a>" not in with_toc
    assert render.table_of_contents("<p>no headings</p>") == ""
    assert render.html_name("a/b.ipynb") == "a/b.html"
    assert render.html_name("README.md") == "README.html"
    assert render.html_name("data/x.csv") == "data/x.csv"
