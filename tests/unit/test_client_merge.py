"""hubclient.merge: what `chronohub project pull` does with each file both sides touched.

Text goes through the real `git merge-file`, notebooks through nbdime; the notebooks here are
built with nbformat's own v4 constructors and read back with nbformat.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from typing import Any

import nbformat
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nbformat import v4

from hubclient import merge, merge_notebook

MARKER_LINE = re.compile(r"^(<{7}|={7}|>{7}|\|{7})", re.MULTILINE)


def notebook(*sources: str, outputs: dict[int, str] | None = None) -> nbformat.NotebookNode:
    """A notebook of code cells with these sources and fixed ids (c0, c1, ...)."""
    nb = v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [v4.new_code_cell(source, id=f"c{i}") for i, source in enumerate(sources)]
    for index, text in (outputs or {}).items():
        nb.cells[index].outputs = [v4.new_output("stream", name="stdout", text=text)]
        nb.cells[index].execution_count = len(text)
    return nb


def raw(nb: nbformat.NotebookNode) -> bytes:
    return (nbformat.writes(nb) + "\n").encode()


def edited(nb: nbformat.NotebookNode, **sources: str) -> nbformat.NotebookNode:
    """A copy with the sources of cells (by id) replaced."""
    changed = copy.deepcopy(nb)
    for cell in changed.cells:
        if cell.id in sources:
            cell.source = sources[cell.id]
    return changed


def read_back(content: bytes | None) -> nbformat.NotebookNode:
    """The merged notebook: valid nbformat, written as nbformat writes it, without markers."""
    assert content is not None
    text = content.decode()
    assert "nbdime-conflicts" not in text
    nb = nbformat.reads(text, as_version=4)
    nbformat.validate(nb)
    assert text == nbformat.writes(nb) + "\n"
    assert not any(MARKER_LINE.search(string) for string in strings(nb))
    return nb


def strings(node: Any) -> list[str]:
    """Every string in a notebook: sources, outputs, metadata."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        node = list(node.values())
    if isinstance(node, list):
        return [string for value in node for string in strings(value)]
    return []


def sources(content: bytes | None) -> list[str]:
    return [cell.source for cell in read_back(content).cells]


def run(
    base: Any, ours: Any, theirs: Any, pick: merge.Pick | None = None, path: str = "f.txt"
) -> merge.Merged | merge.Conflict:
    """merge_file on bytes, None or notebooks (written as nbformat writes them)."""

    def as_bytes(value: Any) -> bytes | None:
        if isinstance(value, nbformat.NotebookNode):
            return raw(value)
        return value

    return merge.merge_file(
        merge.Versions(path, as_bytes(base), as_bytes(ours), as_bytes(theirs)), pick
    )


# -- the trivial cases and delete/modify ---------------------------------------------------------


def test_one_side_unchanged_takes_the_other() -> None:
    assert run(b"a\n", b"a\n", b"b\n") == merge.Merged("f.txt", b"b\n")
    assert run(b"a\n", b"b\n", b"a\n") == merge.Merged("f.txt", b"b\n")
    assert run(b"a\n", b"c\n", b"c\n") == merge.Merged("f.txt", b"c\n")
    # added on one side only, deleted on one side only, deleted on both
    assert run(None, None, b"new\n") == merge.Merged("f.txt", b"new\n")
    assert run(b"a\n", None, b"a\n") == merge.Merged("f.txt", None)
    assert run(b"a\n", None, None) == merge.Merged("f.txt", None)


def test_deleted_on_one_side_and_changed_on_the_other_is_a_conflict_until_picked() -> None:
    assert run(b"a\n", None, b"b\n") == merge.Conflict("f.txt", "deleted by us, changed by them")
    assert run(b"a\n", b"b\n", None) == merge.Conflict("f.txt", "changed by us, deleted by them")
    kept_deletion = run(b"a\n", None, b"b\n", "ours")
    assert isinstance(kept_deletion, merge.Merged)
    assert kept_deletion.content is None
    assert kept_deletion.picked == ("whole file: ours (deleted by us, changed by them)",)
    theirs = run(b"a\n", None, b"b\n", "theirs")
    assert isinstance(theirs, merge.Merged)
    assert theirs.content == b"b\n"
    assert run(b"a\n", b"b\n", None, "theirs") == merge.Merged(
        "f.txt", None, ("whole file: theirs (changed by us, deleted by them)",)
    )


def test_a_pick_is_ours_or_theirs() -> None:
    with pytest.raises(ValueError, match="'ours' or 'theirs'"):
        run(b"a\n", b"b\n", b"c\n", "mine")  # type: ignore[arg-type]


# -- text -----------------------------------------------------------------------------------------

BASE = b"".join(f"line {i}\n".encode() for i in range(1, 21))


def replace_line(text: bytes, number: int, new: bytes) -> bytes:
    lines = text.splitlines(keepends=True)
    lines[number - 1] = new
    return b"".join(lines)


def test_text_changes_in_different_places_merge() -> None:
    ours = replace_line(BASE, 2, b"ours 2\n")
    theirs = replace_line(BASE, 18, b"theirs 18\n")
    result = run(BASE, ours, theirs)
    assert result == merge.Merged("f.txt", replace_line(ours, 18, b"theirs 18\n"))


def test_text_changes_to_the_same_lines_conflict_with_the_lines_named() -> None:
    ours = replace_line(replace_line(BASE, 10, b"ours 10\n"), 11, b"ours 11\n")
    ours = replace_line(ours, 18, b"ours 18\n")
    theirs = replace_line(replace_line(BASE, 10, b"theirs 10\n"), 18, b"theirs 18\n")
    theirs = replace_line(theirs, 2, b"theirs 2\n")
    result = run(BASE, ours, theirs)
    assert result == merge.Conflict("f.txt", "both changed lines 10-11 and 18")


def test_a_text_pick_settles_the_conflicting_hunks_only() -> None:
    ours = replace_line(replace_line(BASE, 10, b"ours 10\n"), 3, b"ours 3\n")
    theirs = replace_line(replace_line(BASE, 10, b"theirs 10\n"), 17, b"theirs 17\n")
    picked = run(BASE, ours, theirs, "theirs")
    assert isinstance(picked, merge.Merged)
    assert picked.content == replace_line(theirs, 3, b"ours 3\n")
    assert picked.picked == ("line 10: theirs",)
    kept = run(BASE, ours, theirs, "ours")
    assert isinstance(kept, merge.Merged)
    assert kept.content == replace_line(ours, 17, b"theirs 17\n")
    assert not MARKER_LINE.search(kept.content.decode())


def test_crlf_text_merges_and_keeps_its_line_ends() -> None:
    base = BASE.replace(b"\n", b"\r\n")
    ours = replace_line(base, 2, b"ours 2\r\n")
    theirs = replace_line(base, 19, b"theirs 19\r\n")
    result = run(base, ours, theirs)
    assert result == merge.Merged("f.txt", replace_line(ours, 19, b"theirs 19\r\n"))
    assert run(base, ours, replace_line(base, 2, b"theirs 2\r\n")) == merge.Conflict(
        "f.txt", "both changed line 2"
    )


def test_empty_files() -> None:
    # emptied on one side, changed on the other: the same lines changed both ways
    conflict = run(b"a\n", b"", b"b\n")
    assert isinstance(conflict, merge.Conflict)
    assert conflict.reason.startswith("both changed")
    assert run(b"a\n", b"", b"b\n", "ours") == merge.Merged("f.txt", b"", ("line 1: ours",))
    # added empty on one side and with content on the other: a three-way merge on empty
    assert run(None, b"", b"x\n") == merge.Merged("f.txt", b"x\n")
    assert run(b"", b"a\n", b"") == merge.Merged("f.txt", b"a\n")


def test_added_on_both_sides_merges_three_way_on_an_empty_base() -> None:
    result = run(None, b"one\n", b"two\n")
    assert result == merge.Conflict("f.txt", "both changed line 1")
    assert run(None, b"one\n", b"two\n", "theirs") == merge.Merged(
        "f.txt", b"two\n", ("line 1: theirs",)
    )


def test_a_huge_line_merges() -> None:
    huge = b"x" * 2_000_000
    base = b"head\n" + huge + b"\ntail\n"
    ours = b"HEAD\n" + huge + b"\ntail\n"
    theirs = b"head\n" + huge + b"\nTAIL\n"
    assert run(base, ours, theirs) == merge.Merged("f.txt", b"HEAD\n" + huge + b"\nTAIL\n")
    both = run(base, b"head\n" + huge + b"y\ntail\n", b"head\n" + huge + b"z\ntail\n")
    assert both == merge.Conflict("f.txt", "both changed line 2")


def test_non_utf8_and_nul_are_binary() -> None:
    latin1 = "café\n".encode("latin-1")
    assert run(latin1, latin1 + b"a\n", latin1 + b"b\n") == merge.Conflict(
        "f.txt", "binary file changed on both sides"
    )
    assert run(b"a\0", b"b\0", b"c\0", "theirs") == merge.Merged(
        "f.txt", b"c\0", ("whole file: theirs (binary file changed on both sides)",)
    )
    assert run(b"\x89PNG", b"\x89PNG1", b"\x89PNG2", "ours").content == b"\x89PNG1"


# -- notebooks ------------------------------------------------------------------------------------

NB = notebook("a = 1", "b = 2", "c = 3")


def test_notebook_edits_to_different_cells_are_both_kept() -> None:
    ours = edited(NB, c0="a = 10")
    theirs = edited(NB, c2="c = 30")
    result = run(NB, ours, theirs, path="nb.ipynb")
    assert isinstance(result, merge.Merged)
    assert sources(result.content) == ["a = 10", "b = 2", "c = 30"]
    assert result.picked == ()
    assert [cell.id for cell in read_back(result.content).cells] == ["c0", "c1", "c2"]


def test_notebook_edits_to_the_same_cell_conflict_with_the_cell_named() -> None:
    ours = edited(NB, c1="b = 20", c0="a = 10")
    theirs = edited(NB, c1="b = 200", c2="c = 30")
    result = run(NB, ours, theirs, path="nb.ipynb")
    assert result == merge.Conflict(
        "nb.ipynb", "both changed 1 cell differently", ("cell 2 (id c1): source",)
    )


@pytest.mark.parametrize(("pick", "middle"), [("ours", "b = 20"), ("theirs", "b = 200")])
def test_a_notebook_pick_settles_the_conflicting_cell_and_keeps_the_other_edits(
    pick: merge.Pick, middle: str
) -> None:
    ours = edited(NB, c1="b = 20", c0="a = 10")
    theirs = edited(NB, c1="b = 200", c2="c = 30")
    result = run(NB, ours, theirs, pick, path="nb.ipynb")
    assert isinstance(result, merge.Merged)
    assert sources(result.content) == ["a = 10", middle, "c = 30"]
    assert result.picked == (f"cell 2 (id c1): {pick} (source)",)


def test_marker_like_lines_of_ones_own_are_kept() -> None:
    # a Markdown heading underlined with "=======" is content, not a conflict mark
    base = copy.deepcopy(NB)
    base.cells.insert(0, v4.new_markdown_cell("Title\n=======\ntext", id="md"))
    result = run(base, edited(base, c0="a = 10"), edited(base, c2="c = 30"), path="nb.ipynb")
    assert isinstance(result, merge.Merged)
    cells = nbformat.reads(result.content.decode(), as_version=4).cells
    assert [cell.source for cell in cells] == ["Title\n=======\ntext", "a = 10", "b = 2", "c = 30"]


def test_a_cell_added_on_one_side_and_another_deleted_on_the_other() -> None:
    ours = copy.deepcopy(NB)
    ours.cells.append(v4.new_markdown_cell("# notes", id="new"))
    theirs = copy.deepcopy(NB)
    del theirs.cells[1]
    result = run(NB, ours, theirs, path="nb.ipynb")
    assert isinstance(result, merge.Merged)
    assert sources(result.content) == ["a = 1", "c = 3", "# notes"]


def test_a_cell_changed_on_one_side_and_deleted_on_the_other_is_a_conflict() -> None:
    ours = edited(NB, c1="b = 20")
    theirs = copy.deepcopy(NB)
    del theirs.cells[1]
    result = run(NB, ours, theirs, path="nb.ipynb")
    assert result == merge.Conflict(
        "nb.ipynb",
        "both changed 1 cell differently",
        ("cell 2 (id c1): changed by us, deleted by them",),
    )
    kept = run(NB, ours, theirs, "ours", path="nb.ipynb")
    assert sources(kept.content) == ["a = 1", "b = 20", "c = 3"]
    gone = run(NB, ours, theirs, "theirs", path="nb.ipynb")
    assert sources(gone.content) == ["a = 1", "c = 3"]


def test_cells_inserted_at_the_same_place_on_both_sides() -> None:
    ours = copy.deepcopy(NB)
    ours.cells.insert(1, v4.new_code_cell("x = 1", id="x"))
    theirs = copy.deepcopy(NB)
    theirs.cells.insert(1, v4.new_code_cell("y = 1", id="y"))
    result = run(NB, ours, theirs, path="nb.ipynb")
    assert isinstance(result, merge.Conflict)
    assert result.cells == ("new cells before cell 2 (id c1): inserted by us and by them",)
    picked = run(NB, ours, theirs, "theirs", path="nb.ipynb")
    assert sources(picked.content) == ["a = 1", "y = 1", "b = 2", "c = 3"]


def test_cell_ids_changed_on_both_sides_are_no_conflict() -> None:
    ours, theirs = copy.deepcopy(NB), edited(NB, c2="c = 30")
    ours.cells[0].id, theirs.cells[0].id = "pasted-by-us", "pasted-by-them"
    result = run(NB, ours, theirs, path="nb.ipynb")
    assert isinstance(result, merge.Merged)
    assert result.picked == ()
    cells = read_back(result.content).cells
    assert [(cell.id, cell.source) for cell in cells] == [
        ("pasted-by-us", "a = 1"),
        ("c1", "b = 2"),
        ("c2", "c = 30"),
    ]


def test_cell_types_and_metadata_changed_differently_conflict(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ours, theirs = copy.deepcopy(NB), copy.deepcopy(NB)
    ours.cells[1] = v4.new_markdown_cell("b = 2", id="c1")
    theirs.cells[1] = v4.new_raw_cell("b = 2", id="c1")
    ours.cells[2].metadata["tags"], theirs.cells[2].metadata["tags"] = ["ours"], ["theirs"]
    ours.metadata["course"], theirs.metadata["course"] = "physics", "chemistry"
    result = run(NB, ours, theirs, path="nb.ipynb")
    assert result == merge.Conflict(
        "nb.ipynb",
        "both changed 3 cells differently",
        ("notebook: metadata", "cell 2 (id c1): cell_type", "cell 3 (id c2): metadata"),
    )
    # what nbdime logs of the conflicts it leaves undecided is said by the Conflict instead
    assert not [r for r in caplog.records if r.name.startswith("nbdime")]
    picked = run(NB, ours, theirs, "theirs", path="nb.ipynb")
    nb = read_back(picked.content)
    assert [cell.cell_type for cell in nb.cells] == ["code", "raw", "code"]
    assert nb.cells[2].metadata["tags"] == ["theirs"]
    assert nb.metadata["course"] == "chemistry"


def test_a_notebook_of_format_4_4_has_cells_without_ids() -> None:
    old = notebook("a = 1", "b = 2")
    old.nbformat_minor = 4
    for cell in old.cells:
        del cell["id"]
    ours, theirs = copy.deepcopy(old), copy.deepcopy(old)
    ours.cells[0].source, theirs.cells[0].source, theirs.cells[1].source = "x", "y", "z"
    result = run(old, ours, theirs, path="nb.ipynb")
    assert result == merge.Conflict(
        "nb.ipynb", "both changed 1 cell differently", ("cell 1: source",)
    )
    picked = run(old, ours, theirs, "ours", path="nb.ipynb")
    nb = read_back(picked.content)
    assert (nb.nbformat_minor, [cell.source for cell in nb.cells]) == (4, ["x", "z"])
    assert all("id" not in cell for cell in nb.cells)


def test_outputs_alone_conflict_and_say_so() -> None:
    ours = notebook("a = 1", "print(b)", outputs={1: "ours\n"})
    theirs = notebook("a = 1", "print(b)", outputs={1: "theirs!\n"})
    theirs.cells[0].source = "a = 2"
    result = run(notebook("a = 1", "print(b)"), ours, theirs, path="nb.ipynb")
    assert isinstance(result, merge.Conflict)
    assert result.reason == "only outputs conflict: both ran 1 cell with different results"
    assert result.cells == ("cell 2 (id c1): outputs, execution_count",)
    picked = run(notebook("a = 1", "print(b)"), ours, theirs, "theirs", path="nb.ipynb")
    assert isinstance(picked, merge.Merged)
    cells = read_back(picked.content).cells
    assert cells[0].source == "a = 2"
    assert cells[1].outputs[0].text == "theirs!\n"
    assert cells[1].execution_count == len("theirs!\n")


def test_an_output_on_one_side_merges() -> None:
    base = notebook("a = 1", "print(b)")
    ours = notebook("a = 1", "print(b)", outputs={1: "ours\n"})
    theirs = edited(base, c0="a = 2")
    result = run(base, ours, theirs, path="nb.ipynb")
    cells = read_back(result.content).cells
    assert [cell.source for cell in cells] == ["a = 2", "print(b)"]
    assert cells[1].outputs[0].text == "ours\n"


def test_a_notebook_added_on_both_sides() -> None:
    # merged from an empty notebook: the same first cell is one cell, the rest is added
    same_start = run(None, notebook("a = 1"), notebook("a = 1", "b = 2"), path="nb.ipynb")
    assert sources(same_start.content) == ["a = 1", "b = 2"]
    ours, theirs = notebook("x = 1"), notebook("y = 1", "b = 2")
    result = run(None, ours, theirs, path="nb.ipynb")
    assert result == merge.Conflict(
        "nb.ipynb",
        "both changed 1 cell differently",
        ("new cells at the end: inserted by us and by them",),
    )
    picked = run(None, ours, theirs, "theirs", path="nb.ipynb")
    assert sources(picked.content) == ["y = 1", "b = 2"]


def test_an_invalid_notebook_is_merged_whole() -> None:
    broken = b'{"cells": [\n'
    result = run(raw(NB), broken, raw(edited(NB, c0="x")), path="nb.ipynb")
    assert isinstance(result, merge.Conflict)
    assert "ours is not a valid notebook: not valid JSON" in result.reason
    assert result.cells == ()
    picked = run(raw(NB), broken, raw(edited(NB, c0="x")), "ours", path="nb.ipynb")
    assert picked.content == broken
    # valid JSON but not a notebook, and a notebook that nbformat's schema refuses
    not_nb = run(raw(NB), b"[]", raw(edited(NB, c0="x")), path="nb.ipynb")
    assert "ours is not a valid notebook: JSON, but not of nbformat 4" in not_nb.reason
    bad = json.loads(raw(NB))
    bad["cells"][0]["cell_type"] = "spreadsheet"
    schema = run(raw(NB), raw(edited(NB, c0="x")), json.dumps(bad).encode(), path="nb.ipynb")
    assert "theirs is not a valid notebook: not valid nbformat" in schema.reason
    non_utf8 = run(raw(NB), b"\xff\xfe", raw(edited(NB, c0="x")), path="nb.ipynb")
    assert "ours is not a valid notebook: not UTF-8" in non_utf8.reason


def test_merge_files_applies_picks_by_path_then_the_default() -> None:
    versions = [
        merge.Versions("a.txt", b"a\n", b"ours\n", b"theirs\n"),
        merge.Versions("b.txt", b"b\n", b"ours\n", b"theirs\n"),
        merge.Versions("c.txt", b"c\n", b"c\n", b"theirs\n"),
        merge.Versions("nb.ipynb", raw(NB), raw(edited(NB, c0="o")), raw(edited(NB, c0="t"))),
    ]
    merged, conflicts = merge.merge_files(versions)
    assert [m.path for m in merged] == ["c.txt"]
    assert [c.path for c in conflicts] == ["a.txt", "b.txt", "nb.ipynb"]
    assert conflicts[2].cells == ("cell 1 (id c0): source",)
    merged, conflicts = merge.merge_files(versions, {"a.txt": "ours"}, default="theirs")
    assert conflicts == []
    contents = {m.path: m.content for m in merged}
    assert contents["a.txt"] == b"ours\n"
    assert contents["b.txt"] == b"theirs\n"
    assert sources(contents["nb.ipynb"])[0] == "t"
    merged, conflicts = merge.merge_files(versions, {"b.txt": "theirs"})
    assert [c.path for c in conflicts] == ["a.txt", "nb.ipynb"]


def test_importing_the_merge_engine_does_not_import_nbdime() -> None:
    code = (
        "import sys, hubclient.merge; print(sorted(m for m in sys.modules"
        " if m.split('.')[0] in ('nbdime', 'nbformat', 'hub')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# -- properties -----------------------------------------------------------------------------------

WORDS = st.sampled_from(["a", "b", "x = 1", "print(2)", "# note", "", "y\nz"])


@st.composite
def notebooks(draw: st.DrawFn) -> nbformat.NotebookNode:
    nb = notebook(*draw(st.lists(WORDS, max_size=5)))
    for cell in nb.cells:
        if draw(st.booleans()):
            cell.outputs = [v4.new_output("stream", name="stdout", text=draw(WORDS))]
    return nb


@st.composite
def edits_of(draw: st.DrawFn, nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy with cells edited, inserted, deleted, moved and (re)run at random."""
    changed = copy.deepcopy(nb)
    for n in range(draw(st.integers(0, 4))):
        cells = changed.cells
        kind = draw(
            st.sampled_from(["edit", "insert", "delete", "move", "run", "retype", "tag", "meta"])
        )
        if kind == "meta":
            changed.metadata["course"] = draw(WORDS)
            continue
        if kind == "insert" or not cells:
            at = draw(st.integers(0, len(cells)))
            cells.insert(at, v4.new_code_cell(draw(WORDS), id=f"n{n}{draw(st.integers(0, 9))}"))
            continue
        at = draw(st.integers(0, len(cells) - 1))
        if kind == "edit":
            cells[at].source = draw(WORDS)
        elif kind == "delete":
            del cells[at]
        elif kind == "move":
            cells.insert(draw(st.integers(0, len(cells) - 1)), cells.pop(at))
        elif kind == "retype":
            make = draw(st.sampled_from([v4.new_markdown_cell, v4.new_raw_cell, v4.new_code_cell]))
            cells[at] = make(cells[at].source, id=cells[at].id)
        elif kind == "tag":
            cells[at].metadata["tags"] = [draw(st.sampled_from(["a", "b", "solution"]))]
        elif cells[at].cell_type == "code":
            cells[at].outputs = [v4.new_output("stream", name="stdout", text=draw(WORDS))]
            cells[at].execution_count = draw(st.integers(1, 9))
    # ids stay unique, as every notebook writer keeps them
    seen: set[str] = set()
    for i, cell in enumerate(changed.cells):
        if cell.id in seen:
            cell.id = f"d{i}"
        seen.add(cell.id)
    return changed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_notebook_merge_is_valid_and_markerless_whatever_the_edits(data: st.DataObject) -> None:
    base = data.draw(notebooks())
    ours = data.draw(edits_of(base))
    theirs = data.draw(edits_of(base))
    result = run(base, ours, theirs, path="nb.ipynb")
    if isinstance(result, merge.Merged):
        read_back(result.content)
    else:
        assert result.reason
    for pick in merge.PICKS:
        picked = run(base, ours, theirs, pick, path="nb.ipynb")
        assert isinstance(picked, merge.Merged), picked
        read_back(picked.content)


@settings(max_examples=30, deadline=None)
@given(base=notebooks(), data=st.data())
def test_trivial_notebook_merges_give_the_changed_side(
    base: nbformat.NotebookNode, data: st.DataObject
) -> None:
    ours = data.draw(edits_of(base))
    assert run(base, ours, ours, path="nb.ipynb") == merge.Merged("nb.ipynb", raw(ours))
    assert run(base, ours, base, "ours", path="nb.ipynb") == merge.Merged("nb.ipynb", raw(ours))
    assert run(base, base, ours, "ours", path="nb.ipynb") == merge.Merged("nb.ipynb", raw(ours))


def test_the_guard_knows_nbdimes_inline_marks() -> None:
    """The marks nbdime's own "inline" strategies write (which the merge never asks for) are
    what the last check before writing a notebook looks for."""
    from nbdime.merging import merge_notebooks

    ours = edited(NB, c1="b = 20")
    theirs = edited(NB, c1="b = 200")
    theirs.metadata["kernelspec"]["display_name"] = "theirs"
    ours.metadata["kernelspec"]["display_name"] = "ours"
    inline, _ = merge_notebooks(NB, ours, theirs)  # nbdime's default: inline
    assert merge_notebook._marks(inline) >= {"<<<<<<<", "=======", ">>>>>>>", "nbdime-conflicts"}
    assert merge_notebook._marks(NB) == set()


def test_a_notebook_nbdime_cannot_merge_is_a_conflict_or_the_picked_side_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """nbdime asserts its invariants and fails on changes it cannot merge: a content problem,
    so a Conflict (or the picked side, whole), never an exception out of a pull."""
    import nbdime.merging

    def broken(*args: Any) -> None:
        raise RuntimeError("Unexpected conflict on /nbformat.")

    monkeypatch.setattr(nbdime.merging, "merge_notebooks", broken)
    ours, theirs = edited(NB, c0="a = 10"), edited(NB, c2="c = 30")
    result = run(NB, ours, theirs, path="nb.ipynb")
    assert result == merge.Conflict(
        "nb.ipynb", "nbdime could not merge it (RuntimeError: Unexpected conflict on /nbformat.)"
    )
    picked = run(NB, ours, theirs, "theirs", path="nb.ipynb")
    assert picked == merge.Merged(
        "nb.ipynb",
        raw(theirs),
        (
            "whole notebook: theirs (as nbdime could not merge it "
            "(RuntimeError: Unexpected conflict on /nbformat.))",
        ),
    )
