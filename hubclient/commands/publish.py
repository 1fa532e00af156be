"""``init``, ``push`` and ``share``: make a folder a hub project, send its changes, share it."""

from __future__ import annotations

import re
import socket
from pathlib import Path

from hubclient import api, config, errors, git, notebooks, workspace
from hubclient.commands import Context, git_failure

NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$")  # the hub's rule for project names
LOCAL_IGNORES = (".ipynb_checkpoints/", "__pycache__/", ".DS_Store")


def split_name(given: str | None, folder: Path, me: str) -> tuple[str, str]:
    """(owner, name) of the project a folder becomes: ``--name`` as ``NAME`` or
    ``OWNER/NAME``, else ``<me>/<folder's name>``; ``errors.Usage`` for a name the hub refuses."""
    owner, name = me, folder.name
    if given:
        owner, _, name = given.rpartition("/")
        owner = owner or me
    if not NAME.match(name) or name.lower().endswith(".git"):
        raise errors.Usage(
            f"{name!r} cannot be a project name (letters, digits, '.', '_', '-'; not ending in"
            " .git): give --name NAME"
        )
    return owner, name


def _start_repo(folder: Path, ctx: Context, hub: config.Hub) -> git.Git:
    repo = workspace.git_for(folder, hub, ctx.environ)
    if not (folder / ".git").exists():
        repo.run("init", "-q", "-b", "main")
    exclude = folder / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    present = exclude.read_text() if exclude.exists() else ""
    missing = [line for line in LOCAL_IGNORES if line not in present.splitlines()]
    if missing:  # editor scratch files are nobody's work: kept out of every commit
        exclude.write_text(present + "".join(line + "\n" for line in missing))
    return repo


def init(ctx: Context, directory: str | None, name: str | None) -> int:
    """Make ``directory`` a git checkout of a new hub project ``<me>/<folder>``."""
    ws = _init(ctx, directory, name)
    ctx.out.say(f"{ws.path} is now a checkout of {ws.full_name} ({ws.origin})")
    ctx.out.result({"project": ws.full_name, "path": str(ws.path), "url": ws.origin})
    return 0


def _init(ctx: Context, directory: str | None, name: str | None) -> workspace.Workspace:
    hub = ctx.hub()
    folder = Path(directory or ".").expanduser().resolve()
    if not folder.is_dir():
        raise errors.Usage(f"no such folder: {folder}")
    root = workspace.find_root(folder)
    if root is not None and root != folder:
        raise errors.Usage(f"{folder} is inside the git checkout {root}: push that folder")
    if root is not None:
        ws = workspace.describe(root, hub, ctx.environ)
        if ws.project is not None:
            return ws
        if ws.origin is not None:
            raise errors.Usage(
                f"{folder} already has an origin ({ws.origin}), not a hub project: give it"
                " another remote name, or remove it with git remote remove origin"
            )
    rest = api.Api(hub)
    owner, project = split_name(name, folder, rest.me())
    if rest.project(owner, project) is not None:
        raise errors.Usage(
            f"{owner}/{project} already exists on the hub: check it out with"
            f" chronohub project checkout {owner}/{project}, or push under --name OTHER"
        )
    try:
        rest.create_project(owner, project)
    except api.ApiError as exc:
        raise errors.Access(f"cannot create {owner}/{project}: {exc.message}") from exc
    repo = _start_repo(folder, ctx, hub)
    repo.run("remote", "add", "origin", hub.git_url(owner, project))
    return workspace.describe(folder, hub, ctx.environ)


def push(
    ctx: Context,
    directory: str | None,
    *,
    to: list[str],
    teams: list[str],
    write: bool,
    message: str | None,
    name: str | None,
    strip_outputs: bool,
) -> int:
    """Commit the folder's changes and push them (creating the project the first time)."""
    hub = ctx.hub()
    folder = Path(directory or ".").expanduser().resolve()
    root = workspace.find_root(folder) if folder.is_dir() else None
    ws = workspace.describe(root, hub, ctx.environ) if root is not None else None
    if ws is None or ws.origin is None:
        ws = _init(ctx, directory, name)
    elif name is not None:
        raise errors.Usage(f"--name is for the first push; {ws.path} is {ws.origin}")
    full_name = ws.full_name
    owner, project = full_name.split("/")
    rest = api.Api(hub)
    if rest.project(owner, project) is None:
        raise errors.Gone(
            f"project {full_name} is gone from {hub.url} (deleted, or you lost access);"
            f" your checkout at {ws.path} is intact"
        )
    if strip_outputs:
        stripped = notebooks.strip_folder(ws.path)
        for path in stripped:
            ctx.out.say(f"stripped the outputs of {path}")
    default = f"changes from {socket.gethostname()}"
    ws.commit_all(message or default)
    if not ws.has_commits():
        raise errors.Usage(f"{ws.path} has no files to push yet")
    branch = ws.branch()
    with ctx.out.progress(f"push {full_name}") as progress:
        try:
            said = ws.git.transfer("push", "origin", f"HEAD:refs/heads/{branch}", progress=progress)
        except git.GitError as exc:
            raise git_failure(exc, full_name, hub) from exc
    ws.git.run("config", f"branch.{branch}.remote", "origin")
    ws.git.run("config", f"branch.{branch}.merge", f"refs/heads/{branch}")
    head = ws.git.out("rev-parse", "HEAD")
    up_to_date = "Everything up-to-date" in said
    ctx.out.say(
        f"{full_name} is up to date ({head[:10]})"
        if up_to_date
        else f"pushed {branch} of {full_name} ({head[:10]})"
    )
    shared = _share(rest, owner, project, to, teams, "write" if write else "read", ctx)
    ctx.out.result(
        {"project": full_name, "branch": branch, "commit": head, "shared": shared},
    )
    return 0


def _share(
    rest: api.Api,
    owner: str,
    project: str,
    users: list[str],
    teams: list[str],
    role: str | None,
    ctx: Context,
) -> list[dict[str, str | None]]:
    done: list[dict[str, str | None]] = []
    for kind, names in (("users", users), ("groups", teams)):
        for member in names:
            try:
                rest.set_member(owner, project, kind, member, role)
            except api.ApiError as exc:
                raise errors.Access(
                    f"cannot share {owner}/{project} with {kind[:-1]} {member}: {exc.message}"
                ) from exc
            label = "team" if kind == "groups" else "user"
            ctx.out.say(
                f"{label} {member}: {role} access to {owner}/{project}"
                if role
                else f"{label} {member}: access to {owner}/{project} revoked"
            )
            done.append({"kind": label, "name": member, "role": role})
    return done


def share(
    ctx: Context, full_name: str, *, to: list[str], teams: list[str], write: bool, revoke: bool
) -> int:
    """Give users and teams read (or write) access to a project, or take it back."""
    owner, _, project = full_name.partition("/")
    if not owner or not project or "/" in project:
        raise errors.Usage(f"not a project (OWNER/NAME): {full_name!r}")
    if not to and not teams:
        raise errors.Usage("share with whom? give --to USER,… and/or --team GROUP,…")
    if revoke and write:
        raise errors.Usage("--revoke takes all access back: --write makes no sense with it")
    rest = api.Api(ctx.hub())
    if rest.project(owner, project) is None:
        raise errors.Gone(f"no project {full_name} on the hub (or you cannot see it)")
    role = None if revoke else ("write" if write else "read")
    shared = _share(rest, owner, project, to, teams, role, ctx)
    ctx.out.result({"project": full_name, "shared": shared})
    return 0
