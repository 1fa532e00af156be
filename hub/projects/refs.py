"""The rules a push must pass, ref by ref, decided without I/O.

What the hub refuses, with the reason git prints beside the ref (``! [remote rejected] main
-> main (<reason>)``): names outside ``refs/heads/`` and ``refs/tags/`` or malformed ones,
deleting the default branch, a non-fast-forward update of the default branch (other
branches may be force-pushed: they are their pushers' work in progress), a branch set to
something that is not a commit, and objects the pack did not bring. A push is all or
nothing: when one ref is refused, the others are answered ``atomic push failed``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from dulwich.refs import Ref, check_ref_format

from events.catalog import projects as project_events

ZERO_SHA = project_events.ZERO_SHA
PUSHABLE = ("refs/heads/", "refs/tags/")
ATOMIC_FAILED = "atomic push failed"

# The object type of a sha in the repository (None: not there), and whether a commit can
# fast-forward to another; the push path answers both from the pack just stored.
KindOf = Callable[[str], str | None]
FastForward = Callable[[str, str], bool]


@dataclass(frozen=True)
class Command:
    """One line of a push: move ``ref`` from ``old`` to ``new`` (hex shas; zeros: none)."""

    old: str
    new: str
    ref: str

    @property
    def deletes(self) -> bool:
        """Whether the ref is to be deleted."""
        return self.new == ZERO_SHA

    @property
    def creates(self) -> bool:
        """Whether the ref is to be created."""
        return self.old == ZERO_SHA


def problem(
    command: Command, *, default_branch: str, kind_of: KindOf, fast_forward: FastForward
) -> str | None:
    """Why ``command`` is refused, or None."""
    ref = command.ref
    if not ref.startswith(PUSHABLE) or not check_ref_format(Ref(ref.encode())):
        return "funny refname: only branches (refs/heads/) and tags (refs/tags/) can be pushed"
    if not project_events.valid_ref(ref):
        return "funny refname: the hub refuses this ref name"
    default = f"refs/heads/{default_branch}"
    if command.deletes:
        if ref == default:
            return f"deleting the default branch {ref} is not allowed by the hub"
        return None
    kind = kind_of(command.new)
    if kind is None:
        return f"missing object {command.new}"
    if ref.startswith("refs/heads/") and kind != "commit":
        return f"a branch must point at a commit, not a {kind}"
    if ref == default and not command.creates and not fast_forward(command.old, command.new):
        return "non-fast-forward (the hub refuses force pushes to the default branch; pull first)"
    return None


def check(
    commands: Sequence[Command],
    *,
    default_branch: str,
    kind_of: KindOf,
    fast_forward: FastForward,
) -> dict[str, str | None]:
    """Each ref's reason for refusal (None: fine), all or nothing: if one is refused, the others
    are ``atomic push failed``."""
    reasons = {
        c.ref: problem(c, default_branch=default_branch, kind_of=kind_of, fast_forward=fast_forward)
        for c in commands
    }
    if any(reasons.values()):
        return {ref: reason or ATOMIC_FAILED for ref, reason in reasons.items()}
    return reasons


def stale(commands: Sequence[Command], current: Mapping[str, str]) -> list[str]:
    """The refs whose ``old`` is not where the ref is now: the pusher's view is out of date."""
    return [c.ref for c in commands if current.get(c.ref, ZERO_SHA) != c.old]


def stale_reason(ref: str) -> str:
    """What git shows for a ref that moved while the push was on its way."""
    return f"stale info: {ref} changed concurrently, fetch first"
