"""The notebook document without a kernel: building, reading back, bad notebooks, output edits."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Array, Doc, Map, Text

from collab import notebook
from collab import session_errors as errors


def sample() -> dict[str, Any]:
    """A notebook with every kind of cell and output JupyterLab stores."""
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
        "cells": [
            {"id": "intro", "cell_type": "markdown", "source": "# Title\n", "metadata": {}},
            {
                "id": "calc",
                "cell_type": "code",
                "source": "print('hi')\n1 + 1",
                "metadata": {"tags": ["x"]},
                "execution_count": 3,
                "outputs": [
                    {"output_type": "stream", "name": "stdout", "text": "hi\n"},
                    {
                        "output_type": "execute_result",
                        "execution_count": 3,
                        "data": {"text/plain": "2"},
                        "metadata": {},
                    },
                ],
            },
            {"id": "raw-1", "cell_type": "raw", "source": "raw text", "metadata": {}},
        ],
    }


def test_a_notebook_reads_back_as_it_was_built() -> None:
    doc: Doc[Any] = Doc()
    notebook.load(doc, sample())

    assert notebook.read(doc) == sample()


def assert_same_history(first: bytes, second: bytes) -> None:
    """Two builds are the same CRDT history: one applied over the other duplicates nothing.

    (Their bytes may differ: Yjs encodes a JSON object's keys in hash-map order.)
    """
    doc: Doc[Any] = Doc()
    doc.apply_update(first)
    before = notebook.read(doc)
    doc.apply_update(second)
    assert notebook.read(doc) == before
    assert len(doc.get(notebook.CELLS, type=Array)) == len(before["cells"])
    other: Doc[Any] = Doc()
    other.apply_update(second)
    assert other.get_state() == doc.get_state()


def test_the_same_notebook_always_builds_the_same_history() -> None:
    """Client id 0 makes the history deterministic: a rebuilt room matches clients' copies."""
    assert_same_history(notebook.initial_update(sample()), notebook.initial_update(sample()))


def test_a_random_client_id_would_duplicate_the_cells() -> None:
    """What the deterministic build prevents (the control for the test above)."""
    import jupyter_ydoc

    doc: Doc[Any] = Doc()
    notebook.load(doc, sample())
    elsewhere: Doc[Any] = Doc()  # a random client id
    jupyter_ydoc.YNotebook(elsewhere).set(notebook.validate(sample()))
    doc.apply_update(elsewhere.get_update())
    assert len(doc.get(notebook.CELLS, type=Array)) == 6


def test_the_document_has_the_shape_jupyterlab_reads() -> None:
    doc: Doc[Any] = Doc()
    notebook.load(doc, sample())

    meta = doc.get(notebook.META, type=Map)
    assert meta["nbformat"] == 4
    assert meta["nbformat_minor"] == 5
    assert isinstance(meta["metadata"], Map)
    cells = doc.get(notebook.CELLS, type=Array)
    code = cells[1]
    assert isinstance(code, Map)
    assert isinstance(code["source"], Text)
    assert isinstance(code["metadata"], Map)
    assert isinstance(code["outputs"], Array)
    assert code["execution_state"] == "idle"
    assert isinstance(code["outputs"][0]["text"], Text)  # stream text grows in place


def test_an_old_notebook_gets_deterministic_cell_ids() -> None:
    old = copy.deepcopy(sample())
    old["nbformat_minor"] = 4
    for cell in old["cells"]:
        del cell["id"]

    built = notebook.validate(old)

    ids = [cell["id"] for cell in built["cells"]]
    assert len(set(ids)) == 3
    assert built["nbformat_minor"] == 5
    assert_same_history(notebook.initial_update(old), notebook.initial_update(old))


def test_an_empty_notebook_gets_one_empty_cell_deterministically() -> None:
    empty = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}
    doc: Doc[Any] = Doc()
    notebook.load(doc, empty)

    cells = notebook.read(doc)["cells"]
    assert [(c["cell_type"], c["source"]) for c in cells] == [("code", "")]
    assert_same_history(notebook.initial_update(empty), notebook.initial_update(empty))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda nb: nb.update(nbformat=3), "only nbformat 4"),
        (lambda nb: nb.update(cells="nope"), "'cells' must be a list"),
        (lambda nb: nb["cells"][1].update(id="intro"), "'intro' is not unique"),
        (lambda nb: nb["cells"][1].pop("metadata"), "'metadata' is a required property"),
        (lambda nb: nb["cells"][0].update(cell_type="bogus"), "notebook['cells'][0]"),
        (lambda nb: nb["cells"][1].update(id="has space"), "notebook['cells'][1]['id']"),
        (
            lambda nb: nb["cells"][1]["outputs"].append({"output_type": "nonsense"}),
            "notebook['cells'][1]['outputs'][2]",
        ),
    ],
)
def test_a_bad_notebook_is_refused_naming_the_problem(mutate: Any, message: str) -> None:
    bad = sample()
    mutate(bad)
    doc: Doc[Any] = Doc()

    with pytest.raises(errors.NotebookInvalid, match=message.replace("[", r"\[")):
        notebook.load(doc, bad)

    assert len(doc.get(notebook.CELLS, type=Array)) == 0  # nothing half-written


def test_a_notebook_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(errors.NotebookInvalid, match="JSON object"):
        notebook.validate(["cells"])  # type: ignore[arg-type]


def test_loading_into_a_document_that_holds_a_notebook_is_refused() -> None:
    doc: Doc[Any] = Doc()
    notebook.load(doc, sample())

    with pytest.raises(errors.NotebookInvalid, match="already holds"):
        notebook.load(doc, sample())


def test_cells_are_found_by_id_and_only_code_cells_run() -> None:
    doc: Doc[Any] = Doc()
    notebook.load(doc, sample())

    assert notebook.source_of(notebook.find_code_cell(doc, "calc")) == "print('hi')\n1 + 1"
    with pytest.raises(errors.CellNotFound):
        notebook.find_cell(doc, "missing")
    with pytest.raises(errors.NotACodeCell, match="markdown"):
        notebook.find_code_cell(doc, "intro")


def stream(name: str, text: str | list[str]) -> dict[str, Any]:
    """A stream output."""
    return {"output_type": "stream", "name": name, "text": text}


def test_output_edits_follow_jupyterlab() -> None:
    """Streams of the same name merge into one growing text; others start a new output."""
    doc: Doc[Any] = Doc()
    notebook.load(doc, sample())
    with doc.transaction():
        cell = notebook.find_code_cell(doc, "calc")
        notebook.begin_execution(cell)
    assert cell["execution_state"] == "running"
    assert cell["execution_count"] is None
    assert len(cell["outputs"]) == 0

    with doc.transaction():
        notebook.set_execution_count(cell, 7)
        notebook.append_output(cell, {"output_type": "stream", "name": "stdout", "text": "a"})
        notebook.append_output(
            cell, {"output_type": "stream", "name": "stdout", "text": ["b", "c"]}
        )
        notebook.append_output(cell, {"output_type": "stream", "name": "stderr", "text": "oops"})
        shown = notebook.append_output(
            cell, {"output_type": "display_data", "data": {"text/plain": "1"}, "metadata": {}}
        )
        notebook.append_output(cell, {"output_type": "stream", "name": "stdout", "text": "d"})
        assert notebook.update_output_data(cell, shown, {"text/plain": "2"}, {"k": 1})
        assert not notebook.update_output_data(cell, 99, {}, {})
        assert not notebook.update_output_data(cell, 0, {}, {})  # a stream has no data
        notebook.end_execution(cell, 7)

    outputs = notebook.read(doc)["cells"][1]["outputs"]
    assert outputs == [
        {"output_type": "stream", "name": "stdout", "text": "abc"},
        {"output_type": "stream", "name": "stderr", "text": "oops"},
        {"output_type": "display_data", "data": {"text/plain": "2"}, "metadata": {"k": 1}},
        {"output_type": "stream", "name": "stdout", "text": "d"},
    ]
    assert cell["execution_state"] == "idle"
    assert notebook.read(doc)["cells"][1]["execution_count"] == 7

    with doc.transaction():
        notebook.clear_outputs(cell)
    assert notebook.read(doc)["cells"][1]["outputs"] == []


def merged(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The reference: consecutive stream outputs of the same name are one output."""
    result: list[dict[str, Any]] = []
    for output in outputs:
        last = result[-1] if result else None
        if (
            output["output_type"] == "stream"
            and last is not None
            and last["output_type"] == "stream"
            and last["name"] == output["name"]
        ):
            result[-1] = {**last, "text": last["text"] + output["text"]}
        else:
            result.append(dict(output))
    return result


output_strategy = st.one_of(
    st.builds(stream, st.sampled_from(["stdout", "stderr"]), st.text(min_size=1, max_size=20)),
    st.builds(
        lambda text: {"output_type": "display_data", "data": {"text/plain": text}, "metadata": {}},
        st.text(max_size=10),
    ),
)


@settings(max_examples=60, deadline=None)
@given(outputs=st.lists(output_strategy, max_size=12), edits=st.lists(st.text(max_size=5)))
def test_outputs_written_while_a_participant_types_converge(
    outputs: list[dict[str, Any]], edits: list[str]
) -> None:
    """The executor's writes and a participant's concurrent typing merge on both replicas."""
    server: Doc[Any] = Doc()
    notebook.load(server, sample())
    client: Doc[Any] = Doc()
    client.apply_update(server.get_update())

    with server.transaction():
        cell = notebook.find_code_cell(server, "calc")
        notebook.begin_execution(cell)
        for output in outputs:
            notebook.append_output(cell, output)
    with client.transaction():
        source = notebook.find_code_cell(client, "calc")["source"]
        for text in edits:
            source += text
    server.apply_update(client.get_update(server.get_state()))
    client.apply_update(server.get_update(client.get_state()))

    assert notebook.read(server) == notebook.read(client)
    ran = notebook.read(server)["cells"][1]
    assert ran["outputs"] == merged(outputs)
    assert ran["source"] == "print('hi')\n1 + 1" + "".join(edits)
