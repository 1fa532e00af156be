"""The client's git wrapper with the real git: progress lines reach the reporter, failures
carry git's words, and the merge plumbing never touches the working tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hubclient import git, trees

ENV = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "T",
    "GIT_AUTHOR_EMAIL": "t@example.org",
    "GIT_COMMITTER_NAME": "T",
    "GIT_COMMITTER_EMAIL": "t@example.org",
}


def repo_with(tmp_path: Path, files: dict[str, str]) -> git.Git:
    path = tmp_path / "repo"
    path.mkdir()
    repo = git.Git(path, environ={**ENV, "HOME": str(tmp_path)})
    repo.run("init", "-q", "-b", "main")
    for name, text in files.items():
        (path / name).write_text(text)
    repo.run("add", "-A")
    repo.run("commit", "-q", "-m", "start")
    return repo


def test_progress_is_reported(tmp_path: Path) -> None:
    source = repo_with(tmp_path, {f"f{n}.txt": f"{n}\n" * 50 for n in range(30)})
    seen: list[tuple[str, int, int]] = []
    target = git.Git(tmp_path, environ={**ENV, "HOME": str(tmp_path)})
    target.transfer(
        "clone", f"file://{source.cwd}", str(tmp_path / "copy"), progress=lambda *p: seen.append(p)
    )
    assert (tmp_path / "copy" / "f1.txt").exists()
    assert seen
    assert any(stage.endswith("objects") for stage, _, _ in seen)


def test_a_failure_carries_gits_words(tmp_path: Path) -> None:
    target = git.Git(tmp_path, environ={**ENV, "HOME": str(tmp_path)})
    with pytest.raises(git.GitError) as failed:
        target.transfer("clone", f"file://{tmp_path}/none", str(tmp_path / "copy"))
    assert "Could not read from remote repository" in failed.value.stderr
    assert failed.value.code == 5


def test_a_merge_commit_is_made_without_touching_the_folder(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, {"a.txt": "1\n2\n3\n", "b.txt": "b\n", "gone.txt": "x\n"})
    base = repo.out("rev-parse", "HEAD")
    repo.run("checkout", "-q", "-b", "theirs")
    (repo.cwd / "a.txt").write_text("1\n2\n3 theirs\n")
    (repo.cwd / "new.txt").write_text("new\n")
    repo.run("rm", "-q", "gone.txt")
    repo.run("add", "-A")
    repo.run("commit", "-q", "-m", "theirs")
    theirs = repo.out("rev-parse", "HEAD")
    repo.run("checkout", "-q", "main")
    (repo.cwd / "a.txt").write_text("1 ours\n2\n3\n")
    repo.run("commit", "-q", "-am", "ours")
    ours = repo.out("rev-parse", "HEAD")
    before = {p.name: p.read_text() for p in repo.cwd.iterdir() if p.is_file()}

    plan = trees.plan(repo, ours, theirs, {}, None)
    assert plan.conflicts == []
    merged = trees.commit(repo, plan, "merge")
    assert {p.name: p.read_text() for p in repo.cwd.iterdir() if p.is_file()} == before
    assert repo.out("rev-parse", "HEAD") == ours
    assert repo.out("show", f"{merged}:a.txt") == "1 ours\n2\n3 theirs"
    assert repo.out("show", f"{merged}:new.txt") == "new"
    assert not repo.ok("cat-file", "-e", f"{merged}:gone.txt")
    assert repo.out("rev-list", "--parents", "-n1", merged).split()[1:] == [ours, theirs]
    assert base in repo.out("rev-list", merged)

    trees.apply(repo, merged)
    assert (repo.cwd / "a.txt").read_text() == "1 ours\n2\n3 theirs\n"
    assert not (repo.cwd / "gone.txt").exists()
    assert repo.out("status", "--porcelain") == ""
