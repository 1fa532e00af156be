"""Shared execution tests: a real ipykernel per test, an in-memory recorder of session events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pycrdt import Doc

from collab import execution, kernel, notebook
from events.catalog import collab_sessions as session_events


class Recorded:
    """A ``Recorder`` that keeps the events in a list (the store's own test is elsewhere)."""

    def __init__(self) -> None:
        self.events: list[tuple[session_events.SessionEvent, execution.Participant | None]] = []

    async def __call__(
        self, event: session_events.SessionEvent, actor: execution.Participant | None
    ) -> None:
        self.events.append((event, actor))

    def types(self) -> list[str]:
        """The type names recorded, in order."""
        return [event.type for event, _ in self.events]

    def of(self, model: type[Any]) -> list[Any]:
        """The recorded events of one model."""
        return [event for event, _ in self.events if isinstance(event, model)]


def cells(*sources: str) -> dict[str, Any]:
    """A notebook with one code cell per source, ids c0, c1…, and a markdown cell ``md``."""
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
        "cells": [
            *(
                {
                    "id": f"c{i}",
                    "cell_type": "code",
                    "source": source,
                    "metadata": {},
                    "outputs": [],
                    "execution_count": None,
                }
                for i, source in enumerate(sources)
            ),
            {"id": "md", "cell_type": "markdown", "source": "# notes", "metadata": {}},
        ],
    }


def notebook_doc(*sources: str) -> Doc[Any]:
    """A document holding ``cells(*sources)``."""
    doc: Doc[Any] = Doc()
    notebook.load(doc, cells(*sources))
    return doc


@pytest.fixture
async def shared_kernel() -> AsyncIterator[kernel.SharedKernel]:
    """A started ipykernel, shut down after the test."""
    async with kernel.SharedKernel() as started:
        yield started
