"""``checkout`` and ``pull``: fetch a project (or any git repository) and merge its changes.

A pull never leaves a half-merged folder: local work is committed first, the merge is made
in git's object store (``hubclient.trees``), and only a finished merge commit is applied to the
folder, by one git command. A conflict without a pick stops before that, with the folder as it
was, and says the command that finishes it.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hubclient import api, config, errors, git, trees, workspace
from hubclient.commands import Context, git_failure

if TYPE_CHECKING:
    from hubclient import merge

# A test hook: the pull exits at once at this step, as if killed (see docs/projects-cli.md).
STOP_AT = "CHRONOHUB_PULL_STOP_AT"
HUB_PROJECT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*/[A-Za-z0-9_][A-Za-z0-9._-]*$")


def is_url(source: str) -> bool:
    """Whether ``source`` is a git URL or path rather than ``OWNER/NAME``."""
    if "://" in source or source.startswith(("file:", "/", "./", "../", "~")):
        return True
    if re.match(r"^[^/@]+@[^/:]+:", source):  # scp-like: git@host:path
        return True
    return HUB_PROJECT.match(source) is None


def default_folder(name: str, environ: Mapping[str, str]) -> Path:
    """``~/projects/<name>``."""
    home = Path(environ.get("HOME") or Path.home())
    return home / "projects" / name


def checkout(ctx: Context, source: str, directory: str | None) -> int:
    """Clone a hub project (``OWNER/NAME``) or any git URL into its own folder."""
    hub: config.Hub | None
    if is_url(source):
        url = source
        hub = ctx.maybe_hub()
        target = config.for_url(hub, url, ctx.environ) if hub is not None else None
        name = re.split(r"[/:]", url.rstrip("/"))[-1].removesuffix(".git") or "checkout"
        full_name = url
    else:
        hub = ctx.hub()
        owner, name = source.split("/")
        if api.Api(hub).project(owner, name) is None:
            raise errors.Access(f"no project {source} on {hub.url} (or you cannot read it)")
        url = hub.git_url(owner, name)
        target, full_name = hub, source
    dest = Path(directory).expanduser() if directory else default_folder(name, ctx.environ)
    dest = dest.resolve()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise errors.Usage(f"{dest} already exists and is not empty: give another folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    repo = workspace.git_for(dest.parent, target, ctx.environ)
    with ctx.out.progress(f"checkout {full_name}") as progress:
        try:
            repo.transfer("clone", url, str(dest), progress=progress)
        except git.GitError as exc:
            raise _remote_failure(exc, full_name, target) from exc
    ctx.out.say(f"checked out {full_name} into {dest}")
    ctx.out.result({"source": source, "url": url, "path": str(dest)}, text=str(dest))
    return 0


def _remote_failure(
    exc: git.GitError, full_name: str, hub: config.Hub | None
) -> errors.ClientError:
    if hub is not None:
        return git_failure(exc, full_name, hub)
    failure = git_failure(exc, full_name, None)
    if isinstance(failure, errors.Unreachable | errors.Access | errors.NeedsPull):
        return failure
    return errors.Failed(exc.message)


def _stop_if_asked(step: str, environ: Mapping[str, str]) -> None:
    if environ.get(STOP_AT) == step:
        os._exit(99)  # as a kill would: no clean-up, no finally


def pull(
    ctx: Context,
    directory: str | None,
    *,
    pick: merge.Pick | None,
    pick_files: dict[str, merge.Pick],
) -> int:
    """Fetch and merge the origin's changes into the checkout (see the module's docstring)."""
    ws = workspace.open_checkout(directory, ctx.maybe_hub(), ctx.environ)
    if ws.origin is None:
        raise errors.Usage(f"{ws.path} has no origin to pull from")
    label = ws.full_name if ws.project is not None else ws.origin
    if ws.project is not None and ws.hub is not None and ws.hub.token is None:
        raise errors.Access(f"no token for {ws.hub.url}: run chronohub login {ws.hub.url}")
    repo = ws.git
    if ws.commit_all("local changes before pull"):
        ctx.out.say('committed your local changes first ("local changes before pull")')
    _stop_if_asked("after-local-commit", ctx.environ)
    branch = ws.branch()
    tracking = f"refs/remotes/origin/{branch}"
    with ctx.out.progress(f"pull {label}") as progress:
        try:
            repo.transfer("fetch", "origin", f"+refs/heads/{branch}:{tracking}", progress=progress)
        except git.GitError as exc:
            if "couldn't find remote ref" in exc.stderr:
                ctx.out.say(f"nothing to pull: {label} has no branch {branch} yet")
                ctx.out.result({"status": "up-to-date", "project": label})
                return 0
            raise _remote_failure(exc, label, ws.hub) from exc
    theirs = repo.out("rev-parse", tracking)
    if not ws.has_commits():
        repo.run("checkout", "-q", "-B", branch, theirs)
        return _done(ctx, label, "checked-out", theirs, [])
    ours = repo.out("rev-parse", "HEAD")
    if ours == theirs or repo.ok("merge-base", "--is-ancestor", theirs, ours):
        return _done(ctx, label, "up-to-date", ours, [])
    if repo.ok("merge-base", "--is-ancestor", ours, theirs):
        _stop_if_asked("before-update", ctx.environ)
        trees.apply(repo, theirs)
        return _done(ctx, label, "fast-forward", theirs, [])
    plan = trees.plan(repo, ours, theirs, pick_files, pick)
    if plan.conflicts:
        return _conflicts(ctx, plan.conflicts, directory)
    commit = trees.commit(repo, plan, f"Merge {label} ({theirs[:10]}) into {branch}")
    _stop_if_asked("before-update", ctx.environ)
    trees.apply(repo, commit)
    picked = [{"path": m.path, "picked": list(m.picked)} for m in plan.merged if m.picked]
    return _done(ctx, label, "merged", commit, picked)


def _done(ctx: Context, label: str, status: str, commit: str, picked: list[dict[str, Any]]) -> int:
    words = {
        "up-to-date": f"{label}: already up to date",
        "fast-forward": f"{label}: updated to {commit[:10]}",
        "checked-out": f"{label}: checked out {commit[:10]}",
        "merged": f"{label}: merged the hub's changes with yours ({commit[:10]})",
    }
    ctx.out.say(words[status])
    for entry in picked:
        ctx.out.say(f"  {entry['path']}: picked {', '.join(entry['picked'])}")
    ctx.out.result({"status": status, "project": label, "commit": commit, "picked": picked})
    return errors.OK


def _conflicts(ctx: Context, conflicts: list[merge.Conflict], directory: str | None) -> int:
    where = f" {shlex.quote(directory)}" if directory else ""
    base = f"chronohub project pull{where}"
    one_each = " ".join(f"--pick-file {shlex.quote(c.path + '=theirs')}" for c in conflicts)
    commands = [f"{base} {one_each}", f"{base} --pick theirs", f"{base} --pick ours"]
    ctx.out.say(
        f"pull stopped: {len(conflicts)} file{'s' if len(conflicts) != 1 else ''} changed on"
        " both sides in the same place; nothing in your folder was changed"
    )
    for conflict in conflicts:
        cells = f" (cells: {', '.join(conflict.cells)})" if conflict.cells else ""
        ctx.out.say(f"  {conflict.path}: {conflict.reason}{cells}")
    ctx.out.say("to finish, pick a side (theirs: the hub's version, ours: yours), file by file:")
    ctx.out.say(f"  {commands[0]}")
    ctx.out.say("or for every conflict at once:")
    ctx.out.say(f"  {commands[1]}")
    ctx.out.result(
        {
            "status": "conflict",
            "conflicts": [
                {"path": c.path, "reason": c.reason, "cells": list(c.cells)} for c in conflicts
            ],
            "commands": commands,
        }
    )
    return errors.CONFLICT
