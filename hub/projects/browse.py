"""Reading a project's content without a clone: refs, commits, trees, files and comparisons.

Everything here is blocking dulwich work on one project's repository, run in
``storage.Workers`` by the callers (``hub/api/project_content.py``, ``hub/pages/projects.py``).
Refs come from PostgreSQL (``project_refs``), never from the repository, so a ``Source`` is
the pair: the repository's objects and the refs the database holds.

A ``ref`` in a URL may be a branch, a tag (peeled to its commit), ``refs/heads/…`` or
``refs/tags/…``, or a commit's sha (full, or a unique prefix of at least 4 hex digits).
A short name is looked up as a branch first, then as a tag: browsing is mostly of branches.
An unknown ref or path raises ``errors.NotFound`` naming it; malformed input
``errors.BadRequest`` naming it.

Git objects are content-addressed, so what is derived from one (a tree's listing with its
blobs' sizes) is the same in every repository that holds it: ``Listings`` keeps the
listings of recently read trees, keyed by the tree's sha, for all projects at once. That is
safe because a listing is only ever looked up by a sha read from the caller's own project.
"""

from __future__ import annotations

import collections
import re
import stat
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

from dulwich import diff_tree
from dulwich.errors import NotTreeError
from dulwich.graph import find_merge_base
from dulwich.objects import (
    S_ISGITLINK,
    Blob,
    Commit,
    ObjectID,
    ShaFile,
    SubmoduleEncountered,
    Tag,
    Tree,
    TreeEntry,
)
from dulwich.repo import Repo
from dulwich.walk import Walker

from hub import errors
from hub.projects import diffs

EntryType = Literal["file", "dir", "submodule", "symlink"]
HEX = re.compile(r"^[0-9a-f]{4,40}$")
FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
# How many tree listings ``Listings`` keeps (each is a list of small dicts: a 1,000-entry
# listing takes about 400 KB).
LISTINGS_KEPT = 256
# How deep a peeled tag chain may go before it is taken for a loop.
MAX_PEEL = 16


@dataclass(frozen=True)
class Source:
    """One project's content: its open repository and its refs (name → sha) from PostgreSQL."""

    repo: Repo
    refs: Mapping[str, str]
    default_branch: str
    full_name: str


@dataclass(frozen=True)
class Resolved:
    """A ref as asked for, what it names (``refs/heads/main``, or the sha itself) and the
    commit it leads to."""

    asked: str
    name: str
    commit: str


# --- names and paths --------------------------------------------------------------------------


def clean_path(path: str) -> str:
    """``path`` without leading or trailing slashes; 400 for ``.``/``..``/empty segments."""
    stripped = path.strip("/")
    if not stripped:
        return ""
    if "\x00" in stripped or any(part in ("", ".", "..") for part in stripped.split("/")):
        raise errors.BadRequest(f"path: {path!r} is not a path inside the repository")
    return stripped


def short_names(refs: Mapping[str, str]) -> set[str]:
    """Every name a ref can be asked by: full names and branch and tag names."""
    names = set(refs)
    for ref in refs:
        for prefix in ("refs/heads/", "refs/tags/"):
            if ref.startswith(prefix):
                names.add(ref[len(prefix) :])
    return names


def split_ref_path(tail: str, refs: Mapping[str, str]) -> tuple[str, str]:
    """``<ref>/<path>`` split where the ref ends: the longest leading run of segments that
    names a ref (branch names may hold slashes), else the first segment (a sha, or unknown)."""
    segments = tail.split("/")
    names = short_names(refs)
    for end in range(len(segments), 0, -1):
        candidate = "/".join(segments[:end])
        if candidate in names:
            return candidate, "/".join(segments[end:])
    return segments[0], "/".join(segments[1:])


# --- refs ---------------------------------------------------------------------------------------


def _peel(source: Source, sha: str, asked: str) -> str:
    """The commit ``sha`` leads to through tags; 400 when it is not a commit at all."""
    obj = _object(source, sha, asked)
    for _ in range(MAX_PEEL):
        if isinstance(obj, Tag):
            obj = _object(source, obj.object[1].decode(), asked)
            continue
        if isinstance(obj, Commit):
            return obj.id.decode()
        raise errors.BadRequest(f"ref: {asked!r} names a {obj.type_name.decode()}, not a commit")
    raise errors.BadRequest(f"ref: {asked!r} is a chain of tags too long to follow")


def _object(source: Source, sha: str, asked: str) -> ShaFile:
    try:
        return source.repo.object_store[ObjectID(sha.encode())]
    except KeyError as exc:
        raise errors.NotFound(f"No such ref in {source.full_name}: {asked}") from exc


def resolve(source: Source, ref: str) -> Resolved:
    """The commit ``ref`` names (see the module's docstring for what a ref may be)."""
    if not ref or len(ref) > 255 or "\x00" in ref or ".." in ref:
        raise errors.BadRequest(f"ref: {ref!r} is not a ref name or sha")
    for name in (ref, f"refs/heads/{ref}", f"refs/tags/{ref}"):
        sha = source.refs.get(name)
        if sha is not None and (name != ref or ref.startswith("refs/")):
            return Resolved(ref, name, _peel(source, sha, ref))
    lowered = ref.lower()
    if HEX.match(lowered):
        if FULL_SHA.match(lowered):
            return Resolved(ref, lowered, _peel(source, lowered, ref))
        found = list(source.repo.object_store.iter_prefix(lowered.encode()))
        if len(found) > 1:
            raise errors.BadRequest(f"ref: {ref!r} is an ambiguous sha prefix")
        if found:
            sha = found[0].decode()
            return Resolved(ref, sha, _peel(source, sha, ref))
    raise errors.NotFound(f"No such ref in {source.full_name}: {ref}")


def list_refs(source: Source) -> list[dict[str, Any]]:
    """The branches and tags, each with the commit it leads to (tags peeled)."""
    out = []
    for name, sha in sorted(source.refs.items()):
        kind = "branch" if name.startswith("refs/heads/") else "tag"
        short = name.split("/", 2)[2]
        try:
            commit: str | None = _peel(source, sha, short)
        except errors.HubError:
            commit = None  # a tag of a tree or blob: listed, but it leads to no commit
        out.append(
            {
                "name": short,
                "ref": name,
                "type": kind,
                "sha": sha,
                "commit": commit,
                "default": name == f"refs/heads/{source.default_branch}",
            }
        )
    return out


# --- commits --------------------------------------------------------------------------------------


def _person(raw: bytes, when: int, offset: int) -> dict[str, Any]:
    text = raw.decode("utf-8", "replace")
    name, _, email = text.partition(" <")
    zone = timezone(timedelta(seconds=offset))
    return {
        "name": name.strip(),
        "email": email.rstrip(">").strip(),
        "date": datetime.fromtimestamp(when, UTC).astimezone(zone).isoformat(),
    }


def commit_model(commit: Commit) -> dict[str, Any]:
    """A commit as the API shows it."""
    return {
        "sha": commit.id.decode(),
        "parents": [p.decode() for p in commit.parents],
        "tree": commit.tree.decode(),
        "author": _person(commit.author, commit.author_time, commit.author_timezone),
        "committer": _person(commit.committer, commit.commit_time, commit.commit_timezone),
        "message": commit.message.decode("utf-8", "replace"),
    }


def commits(
    source: Source, ref: str, path: str, offset: int, limit: int
) -> tuple[list[dict[str, Any]], int, Resolved]:
    """The commits reachable from ``ref`` (newest first) that change ``path`` (all when
    empty): the page ``offset``/``limit``, the total, and what ``ref`` resolved to."""
    resolved = resolve(source, ref)
    path = clean_path(path)
    if path:
        _lookup(source, resolved, path)  # 404 naming a path the commit does not have
    walker = Walker(
        source.repo.object_store,
        [ObjectID(resolved.commit.encode())],
        paths=[path.encode()] if path else None,
    )
    page: list[dict[str, Any]] = []
    total = 0
    for entry in walker:
        if offset <= total < offset + limit:
            page.append(commit_model(entry.commit))
        total += 1
    return page, total, resolved


def get_commit(source: Source, ref: str) -> dict[str, Any]:
    """The commit ``ref`` names."""
    resolved = resolve(source, ref)
    commit = source.repo.object_store[ObjectID(resolved.commit.encode())]
    assert isinstance(commit, Commit)
    return commit_model(commit)


# --- trees and files ------------------------------------------------------------------------------


def entry_type(mode: int) -> EntryType:
    """What a tree entry of ``mode`` is."""
    if S_ISGITLINK(mode):
        return "submodule"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "file"


class Listings:
    """Recently read trees' listings by tree sha (see the module's docstring), thread-safe."""

    def __init__(self, kept: int = LISTINGS_KEPT) -> None:
        self._kept = kept
        self._items: collections.OrderedDict[tuple[str, bool], list[dict[str, Any]]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    def get(self, key: tuple[str, bool]) -> list[dict[str, Any]] | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: tuple[str, bool], listing: list[dict[str, Any]]) -> None:
        with self._lock:
            self._items[key] = listing
            self._items.move_to_end(key)
            while len(self._items) > self._kept:
                self._items.popitem(last=False)


LISTINGS = Listings()


def _lookup(source: Source, resolved: Resolved, path: str) -> tuple[int, str]:
    """The mode and sha of ``path`` in the commit; the root is the commit's tree."""
    commit = source.repo.object_store[ObjectID(resolved.commit.encode())]
    assert isinstance(commit, Commit)
    if not path:
        return stat.S_IFDIR, commit.tree.decode()
    store = source.repo.object_store
    tree = store[commit.tree]
    assert isinstance(tree, Tree)
    try:
        mode, sha = tree.lookup_path(store.__getitem__, path.encode())
    except (KeyError, NotTreeError, SubmoduleEncountered) as exc:
        raise errors.NotFound(
            f"No such path in {source.full_name} at {resolved.asked}: {path}"
        ) from exc
    return mode, sha.decode()


def _entries(
    source: Source, tree_sha: str, prefix: str, recursive: bool
) -> Iterator[dict[str, Any]]:
    store = source.repo.object_store
    tree = store[ObjectID(tree_sha.encode())]
    assert isinstance(tree, Tree)
    for item in tree.iteritems(name_order=True):
        name = item.path.decode("utf-8", "replace")
        mode = item.mode
        kind = entry_type(mode)
        size = None
        if kind in ("file", "symlink"):
            size = len(store.get_raw(item.sha)[1])
        yield {
            "name": name,
            "path": f"{prefix}{name}",
            "type": kind,
            "mode": f"{mode:06o}",
            "size": size,
            "sha": item.sha.decode(),
        }
        if recursive and kind == "dir":
            yield from _entries(source, item.sha.decode(), f"{prefix}{name}/", recursive)


def tree(
    source: Source, ref: str, path: str, *, recursive: bool = False
) -> tuple[Resolved, str, list[dict[str, Any]]]:
    """The entries of directory ``path`` at ``ref`` (every entry below it when
    ``recursive``), with what ``ref`` resolved to and the tree's sha; 400 if it is a file."""
    resolved = resolve(source, ref)
    path = clean_path(path)
    mode, sha = _lookup(source, resolved, path)
    if not stat.S_ISDIR(mode):
        raise errors.BadRequest(f"path: {path} is a {entry_type(mode)}, not a directory")
    key = (sha, recursive)
    listing = LISTINGS.get(key)
    if listing is None:
        listing = list(_entries(source, sha, "", recursive))
        LISTINGS.put(key, listing)
    prefix = f"{path}/" if path else ""
    if prefix:
        # Cached listings hold paths relative to their tree: the same tree may sit anywhere.
        listing = [{**entry, "path": prefix + entry["path"]} for entry in listing]
    return resolved, sha, listing


@dataclass(frozen=True)
class File:
    """A file at a commit: its path, mode, blob sha and content."""

    path: str
    mode: int
    sha: str
    data: bytes
    resolved: Resolved

    @property
    def type(self) -> EntryType:
        """``file`` or ``symlink`` (whose content is its target)."""
        return entry_type(self.mode)


def read_file(source: Source, ref: str, path: str) -> File:
    """The file ``path`` at ``ref``; 400 if ``path`` is a directory or a submodule."""
    resolved = resolve(source, ref)
    path = clean_path(path)
    if not path:
        raise errors.BadRequest("path: the root is a directory, not a file")
    mode, sha = _lookup(source, resolved, path)
    kind = entry_type(mode)
    if kind in ("dir", "submodule"):
        raise errors.BadRequest(f"path: {path} is a {kind}, not a file")
    blob = source.repo.object_store[ObjectID(sha.encode())]
    assert isinstance(blob, Blob)
    return File(path=path, mode=mode, sha=sha, data=blob.as_raw_string(), resolved=resolved)


# --- comparisons ------------------------------------------------------------------------------

# A comparison lists at most this many files (and says it was cut short).
MAX_COMPARE_FILES = 1000
_STATUS = {
    diff_tree.CHANGE_ADD: "added",
    diff_tree.CHANGE_MODIFY: "modified",
    diff_tree.CHANGE_DELETE: "deleted",
    diff_tree.CHANGE_RENAME: "renamed",
    diff_tree.CHANGE_COPY: "copied",
}


def parse_range(spec: str) -> tuple[str, str]:
    """``base...head`` as its two refs; 400 naming the range when it is not one."""
    base, dots, head = spec.partition("...")
    if not dots or not base or not head:
        raise errors.BadRequest(f"range: {spec!r} is not <base>...<head>")
    return base, head


def _blob(source: Source, entry: TreeEntry | None) -> bytes | None:
    if entry is None or entry.sha is None or entry.mode is None or S_ISGITLINK(entry.mode):
        return None
    blob = source.repo.object_store[entry.sha]
    return blob.as_raw_string() if isinstance(blob, Blob) else None


def _file_change(source: Source, change: diff_tree.TreeChange) -> dict[str, Any]:
    old, new = change.old, change.new
    either = new if new is not None else old
    path = either.path.decode("utf-8", "replace") if either is not None and either.path else ""
    old_path = old.path.decode("utf-8", "replace") if old is not None and old.path else None
    item: dict[str, Any] = {
        "status": _STATUS.get(change.type, change.type),
        "path": path if new is not None and new.path else old_path,
        "old_path": old_path,
        "old_sha": old.sha.decode() if old is not None and old.sha else None,
        "new_sha": new.sha.decode() if new is not None and new.sha else None,
        "old_mode": f"{old.mode:06o}" if old is not None and old.mode else None,
        "new_mode": f"{new.mode:06o}" if new is not None and new.mode else None,
        "binary": False,
        "too_large": False,
        "additions": 0,
        "deletions": 0,
        "patch": None,
        "notebook": None,
    }
    before, after = _blob(source, old), _blob(source, new)
    sides = [d for d in (before, after) if d is not None]
    if any(len(d) > diffs.MAX_PATCH_INPUT_BYTES for d in sides):
        item["too_large"] = True
        return item
    if any(diffs.is_binary(d) for d in sides):
        item["binary"] = True
        return item
    old_text = before.decode() if before is not None else ""
    new_text = after.decode() if after is not None else ""
    old_name = f"a/{old_path}" if before is not None else "/dev/null"
    new_name = f"b/{item['path']}" if after is not None else "/dev/null"
    patch = diffs.unified(old_text, new_text, old_name, new_name)
    item["patch"] = patch
    item["additions"], item["deletions"] = diffs.counts(patch)
    if str(item["path"]).endswith(".ipynb"):
        item["notebook"] = diffs.notebook_diff(before, after)
    return item


def compare(source: Source, base_ref: str, head_ref: str) -> dict[str, Any]:
    """What changed from ``base_ref`` to ``head_ref`` as ``git diff base...head`` sees it:
    from their merge base (``base`` itself when the histories share no commit) to ``head``."""
    base = resolve(source, base_ref)
    head = resolve(source, head_ref)
    store = source.repo.object_store
    bases = find_merge_base(
        source.repo, [ObjectID(base.commit.encode()), ObjectID(head.commit.encode())]
    )
    merge_base = bases[0].decode() if bases else base.commit
    old_commit, new_commit = (
        store[ObjectID(merge_base.encode())],
        store[ObjectID(head.commit.encode())],
    )
    assert isinstance(old_commit, Commit)
    assert isinstance(new_commit, Commit)
    files: list[dict[str, Any]] = []
    truncated = False
    changes = diff_tree.tree_changes(
        store,
        old_commit.tree,
        new_commit.tree,
        rename_detector=diff_tree.RenameDetector(store),
    )
    for change in changes:
        if len(files) == MAX_COMPARE_FILES:
            truncated = True
            break
        files.append(_file_change(source, change))
    return {
        "base": {"ref": base.asked, "sha": base.commit},
        "head": {"ref": head.asked, "sha": head.commit},
        "merge_base": merge_base,
        "files": files,
        "truncated": truncated,
    }
