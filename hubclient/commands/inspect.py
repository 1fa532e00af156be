"""``status``, ``log`` and ``list``: where a checkout stands, its history, the projects."""

from __future__ import annotations

from typing import Any

from hubclient import api, errors, git, workspace
from hubclient.commands import Context


def status(ctx: Context, directory: str | None, *, offline: bool) -> int:
    """Ahead/behind the origin, local changes, who pushed last."""
    ws = workspace.open_checkout(directory, ctx.maybe_hub(), ctx.environ)
    label = ws.full_name if ws.project is not None else (ws.origin or str(ws.path))
    branch = ws.branch()
    tracking = f"refs/remotes/origin/{branch}"
    reached = None
    if ws.origin is not None and not offline:
        try:
            ws.git.transfer("fetch", "-q", "origin", f"+refs/heads/{branch}:{tracking}")
            reached = True
        except git.GitError as exc:
            reached = False
            ctx.out.say(f"(could not fetch: {exc.message}; showing what was last fetched)")
    changes = ws.changed()
    ahead = behind = 0
    last: dict[str, str] | None = None
    if ws.git.ok("rev-parse", "--verify", "-q", tracking) and ws.has_commits():
        counts = ws.git.out("rev-list", "--left-right", "--count", f"HEAD...{tracking}")
        ahead, behind = (int(n) for n in counts.split())
        who, when, subject = ws.git.out("log", "-1", "--format=%an%x00%ar%x00%s", tracking).split(
            "\0"
        )
        last = {"author": who, "when": when, "subject": subject}
    elif ws.has_commits() and ws.origin is not None:
        ahead = int(ws.git.out("rev-list", "--count", "HEAD"))
    data: dict[str, Any] = {
        "project": label,
        "path": str(ws.path),
        "branch": branch,
        "ahead": ahead,
        "behind": behind,
        "local_changes": [line[3:] for line in changes],
        "last_push": last,
        "fetched": reached,
    }
    lines = [f"{label} ({branch}) in {ws.path}"]
    if ws.origin is None:
        lines.append("not pushed anywhere yet: chronohub project push")
    elif ahead or behind:
        lines.append(
            f"{ahead} commit{'s' if ahead != 1 else ''} to push,"
            f" {behind} to pull"
            + (" (chronohub project pull)" if behind else " (chronohub project push)")
        )
    else:
        lines.append("up to date with the hub" if ws.project else "up to date with origin")
    if changes:
        lines.append(f"{len(changes)} local change{'s' if len(changes) != 1 else ''}:")
        lines.extend(f"  {line}" for line in changes)
    else:
        lines.append("no local changes")
    if last is not None:
        lines.append(f"last on the hub: {last['subject']!r} by {last['author']}, {last['when']}")
    ctx.out.result(data, text="\n".join(lines))
    return 0


def log(ctx: Context, directory: str | None, *, count: int) -> int:
    """The checkout's history, newest first."""
    ws = workspace.open_checkout(directory, ctx.maybe_hub(), ctx.environ)
    if not ws.has_commits():
        ctx.out.result({"commits": []}, text="no commits yet")
        return 0
    raw = ws.git.out("log", f"-n{count}", "--format=%H%x00%an%x00%aI%x00%s%x1e")
    commits = []
    for record in raw.split("\x1e"):
        if record.strip():
            sha, author, date, subject = record.strip().split("\0")
            commits.append({"commit": sha, "author": author, "date": date, "subject": subject})
    text = "\n".join(
        f"{c['commit'][:10]} {c['date'][:16].replace('T', ' ')} {c['author']}: {c['subject']}"
        for c in commits
    )
    ctx.out.result({"commits": commits}, text=text)
    return 0


def list_projects(ctx: Context, *, shared: bool, teams: list[str]) -> int:
    """The projects the caller can read: all, shared with them, or shared with/owned by a
    team."""
    rest = api.Api(ctx.hub())
    found = rest.projects(shared=shared)
    if teams:
        wanted = set(teams)
        kept = []
        for project in found:
            if project["owner"] in wanted:
                kept.append(project)
                continue
            try:
                members = rest.members(project["owner"], project["name"])
            except api.ApiError as exc:
                if exc.status == 404:  # gone since the list was read
                    continue
                raise errors.Access(exc.message) from exc
            if any(m["kind"] == "group" and m["name"] in wanted for m in members):
                kept.append(project)
        found = kept
    rows = [
        {
            "name": p["full_name"],
            "visibility": p["visibility"],
            "last_push": p.get("last_push"),
            "url": p["clone_url"],
        }
        for p in found
    ]
    text = "\n".join(
        f"{r['name']}  ({r['visibility']}, last push {r['last_push'] or 'never'})" for r in rows
    )
    ctx.out.result({"projects": rows}, text=text or "no projects")
    return 0
