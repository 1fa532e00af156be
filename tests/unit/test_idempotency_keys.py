"""The ``Idempotency-Key`` header's parsing, and who counts as a dead webhook lease holder:
pure checks, no database."""

from __future__ import annotations

import os
import socket

import pytest

from hub import errors
from hub.audit import webhooks
from hub.web import idempotency


@pytest.mark.parametrize(
    ("values", "key"),
    [
        (["abc"], "abc"),
        (['"abc"'], "abc"),
        ([' "8e03978e-40d5-43e8-bc93-6894a57f9324" '], "8e03978e-40d5-43e8-bc93-6894a57f9324"),
        (['"a \\"quoted\\" key"'], 'a "quoted" key'),
        (["x" * 255], "x" * 255),
    ],
)
def test_keys_as_the_draft_sends_them_or_bare(values: list[str], key: str) -> None:
    assert idempotency.parse_key(values) == key


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ([""], "the key is empty"),
        (["  "], "the key is empty"),
        (['""'], "the key is empty"),
        (["x" * 256], "256 characters long, at most 255"),
        (["tab\there"], "printable ASCII"),
        (["caf\u00e9"], "printable ASCII"),
        (["a", "b"], "send the header once, not 2 times"),
    ],
)
def test_bad_keys_name_their_problem(values: list[str], problem: str) -> None:
    with pytest.raises(errors.BadRequest, match=problem):
        idempotency.parse_key(values)


def test_a_lease_holder_is_dead_only_if_it_was_of_this_machine_and_is_gone() -> None:
    host = socket.gethostname()
    gone = 2**22 + 12345  # above the default pid_max: no such process
    assert webhooks.dead_here(f"{host}:{gone}:u")
    assert not webhooks.dead_here(f"{host}:{os.getpid()}:u")  # this very process
    assert not webhooks.dead_here(f"{host}:1:u")  # alive
    assert not webhooks.dead_here(f"another-{host}:{gone}:u")  # another machine's
    assert not webhooks.dead_here(f"{host}:5b1c-uuid")  # named the older way
    assert not webhooks.dead_here(f"{host}:{gone}")
