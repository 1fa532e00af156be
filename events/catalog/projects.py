"""Events of the project aggregate (stream ``project-<project_id>``): git projects the hub serves.

A project is named ``owner/name``; its owner is a user or a group (a team), referred to by id
and by the owner's name at the time, so "who owned and who could read project X on day D"
is answered from the log alone. Git objects are not in the log: a push records which refs
moved from which commit to which, never file contents.
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from events import models
from events.catalog.names import Name

OwnerKind = Literal["user", "group"]
MemberKind = Literal["user", "group"]
Visibility = Literal["private", "hub", "public"]
Role = Literal["read", "write", "admin"]
Via = Literal["git", "api", "import"]

ROLES: tuple[Role, ...] = ("read", "write", "admin")

# A project name is one path step of a clone URL (/hub/git/<owner>/<name>.git): letters,
# digits, '.', '_' and '-', not starting with '.' or '-' (no hidden files, no options for
# tools handed the name) and not ending in '.git' (the URL adds that).
PROJECT_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$"
SHA_PATTERN = r"^[0-9a-f]{40}$"
ZERO_SHA = "0" * 40
# A branch name as the default branch: a short name under refs/heads/, checked further by
# ``dulwich.refs.check_ref_format`` where refs are written.
BRANCH_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._/-]{0,199}$"
REF_PATTERN = r"^refs/(heads|tags)/[^\x00-\x20\x7f~^:?*\[\\]{1,240}$"


def _not_dot_git(name: str) -> str:
    if name.lower().endswith(".git"):
        raise ValueError("a project name cannot end in '.git' (clone URLs add it)")
    return name


def _branch_shape(name: str) -> str:
    # git's own rules (check-ref-format) that the pattern does not express
    if ".." in name or "//" in name or name.endswith(("/", ".", ".lock")) or "/." in name:
        raise ValueError(f"{name!r} is not a valid branch name")
    return name


ProjectName = Annotated[
    str,
    Field(min_length=1, max_length=100, pattern=PROJECT_NAME_PATTERN),
    AfterValidator(_not_dot_git),
]
Branch = Annotated[
    str, Field(min_length=1, max_length=200, pattern=BRANCH_PATTERN), AfterValidator(_branch_shape)
]
Description = Annotated[str, Field(max_length=1000)]
Sha = Annotated[str, Field(pattern=SHA_PATTERN)]
# http(s) or git URL without credentials (checked fully by hub/projects/remote.py)
ImportUrl = Annotated[str, Field(max_length=2000, pattern=r"^(https?|git)://[^@\s]+$")]


class ProjectCreated(models.Event):
    """A project was created (empty: objects arrive with the first push, or its import's)."""

    type: ClassVar[str] = "project.created"

    project_id: UUID
    owner_kind: OwnerKind
    owner_id: UUID
    owner: Name
    name: ProjectName
    description: Description = ""
    visibility: Visibility = "private"
    default_branch: Branch = "main"
    import_url: ImportUrl | None = Field(
        default=None,
        description="The repository the project was imported from (never with credentials)",
    )


class ProjectUpdated(models.Event):
    """Some of a project's settings changed; fields left out (None) did not."""

    type: ClassVar[str] = "project.updated"

    project_id: UUID
    description: Description | None = None
    visibility: Visibility | None = None
    default_branch: Branch | None = None


class ProjectRenamed(models.Event):
    """A project was given a new name; its repository (kept by id) did not move."""

    type: ClassVar[str] = "project.renamed"

    project_id: UUID
    owner: Name
    old_name: ProjectName
    name: ProjectName


class ProjectDeleted(models.Event):
    """A project was deleted, with its members, refs and objects."""

    type: ClassVar[str] = "project.deleted"

    project_id: UUID
    owner: Name
    name: ProjectName


class ProjectMemberGranted(models.Event):
    """A user or a group was given a role on a project (replacing any role it had)."""

    type: ClassVar[str] = "project.member_granted"

    project_id: UUID
    member_kind: MemberKind
    member_id: UUID
    member: Name
    role: Role


class ProjectMemberRevoked(models.Event):
    """A user or a group lost its role on a project."""

    type: ClassVar[str] = "project.member_revoked"

    project_id: UUID
    member_kind: MemberKind
    member_id: UUID
    member: Name


def valid_ref(ref: str) -> bool:
    """Whether ``ref`` is a branch or tag name a push may record."""
    return (
        re.fullmatch(REF_PATTERN, ref) is not None
        and ".." not in ref
        and "//" not in ref
        and "/." not in ref
        and not ref.endswith((".lock", "/", "."))
    )


def _checked_ref(ref: str) -> str:
    if not valid_ref(ref):
        raise ValueError(f"{ref!r} is not a branch or tag name")
    return ref


class RefUpdate(BaseModel):
    """One ref a push moved: ``old`` or ``new`` is all zeros for a creation or a deletion."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ref: Annotated[str, AfterValidator(_checked_ref)]
    old: Sha
    new: Sha


class ProjectPushed(models.Event):
    """Refs of a project moved, all together: one event per push, however many refs."""

    type: ClassVar[str] = "project.pushed"

    project_id: UUID
    refs: list[RefUpdate] = Field(min_length=1, max_length=10_000)
    pusher: Name
    pusher_kind: Literal["user", "service"] = "user"
    commits: int = Field(ge=0, description="Commits new to the project that the push brought")
    via: Via = "git"


def stream_id(project_id: UUID) -> str:
    """The stream that holds one project's events."""
    return f"project-{project_id}"


# --- collaboration on a project's notebook (hub/projects/sessions.py) ------------------------

# A path inside the repository as the sessions API takes it: relative, no empty, "." or ".."
# segment (hub/projects/browse.py checks it the same way before anything is written).
PATH_PATTERN = r"^[^/\x00]+(/[^/\x00]+)*$"


class ProjectSessionOpened(models.Event):
    """A shared execution session was opened on a notebook of the project: its room is seeded
    from the notebook at ``base_commit`` and who may join it follows the project's roles.

    ``branch`` is where a commit from the session goes (None: the session was opened on a tag
    or a commit, and its commits go to ``collab/<session>``). Never the notebook's content.
    """

    type: ClassVar[str] = "project.session_opened"

    project_id: UUID
    session_id: UUID
    room: str = Field(min_length=1, max_length=255)
    path: str = Field(min_length=1, max_length=4096, pattern=PATH_PATTERN)
    ref: str = Field(min_length=1, max_length=255, description="The ref as it was asked for")
    branch: Branch | None
    base_commit: Sha


class ProjectCommittedFromSession(models.Event):
    """The notebook of a session was committed to the project (the refs moved by the
    ``project.pushed`` appended in the same transaction). ``participants`` are everyone who
    edited the room, the committer first; no file content."""

    type: ClassVar[str] = "project.committed_from_session"

    project_id: UUID
    session_id: UUID
    commit: Sha
    branch: Branch
    diverted: bool = Field(
        description="The session's branch had moved: the commit went to collab/<session>"
    )
    participants: list[Name] = Field(min_length=1, max_length=1000)
