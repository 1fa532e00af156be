"""The dashboards' sandbox (chronohub_publish.sandbox): what its command line lets a run see,
the throwaway working directory, the opt-out and the refusal when bubblewrap is missing."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from chronohub_publish import sandbox


def _pairs(args: list[str], flag: str) -> list[tuple[str, str]]:
    return [(args[i + 1], args[i + 2]) for i, arg in enumerate(args) if arg == flag]


def test_a_run_sees_the_system_the_environment_and_its_copy_only(tmp_path: Path) -> None:
    work = tmp_path / "copy" / "work"
    box = sandbox.Sandbox("/usr/bin/bwrap", None)
    args = box.command(["python", "-m", "x"], work, chdir=sandbox.INSIDE / "sub")
    assert args[0] == "/usr/bin/bwrap"
    assert args[-4:] == ["--", "python", "-m", "x"]
    for namespace in ("--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-net"):
        assert namespace in args
    assert "--die-with-parent" in args
    read_only = _pairs(args, "--ro-bind-try") + _pairs(args, "--ro-bind")
    assert all(source == target for source, target in read_only)
    bound = {Path(source) for source, _ in read_only}
    assert Path("/usr") in bound
    assert Path(sys.prefix) in bound or any(Path(sys.prefix).is_relative_to(p) for p in bound)
    assert sandbox.PACKAGE in bound or any(sandbox.PACKAGE.is_relative_to(p) for p in bound)
    # read-write: the copy, seen at /home/dashboard, nothing else
    assert _pairs(args, "--bind") == [(str(work), str(sandbox.INSIDE))]
    assert args[args.index("--chdir") + 1] == str(sandbox.INSIDE / "sub")
    # its own /tmp, first: a later tmpfs would hide a bind under /tmp
    assert args[args.index("--tmpfs") + 1] == "/tmp"
    assert args.index("--tmpfs") < min(i for i, a in enumerate(args) if a.startswith("--ro-bind"))
    assert not [a for a in args if str(tmp_path) in a and a != str(work)]


def test_the_services_data_inside_a_bound_directory_is_covered(tmp_path: Path) -> None:
    data_dir = Path(sys.prefix) / "publish-data"
    args = sandbox.Sandbox("bwrap", None, (data_dir,)).command(["x"], tmp_path)
    tmpfs = [args[i + 1] for i, a in enumerate(args) if a == "--tmpfs"]
    assert str(data_dir) in tmpfs
    # after the binds that hold it, so it covers them
    assert args.index(str(data_dir)) > args.index(str(Path(sys.prefix)))


def test_the_hubs_paths_are_hidden_where_a_bound_tree_holds_them(tmp_path: Path) -> None:
    """``PUBLISH_HIDE`` (from the hub: its data directory, its configuration's directory) is
    covered where the sandbox would see it; never a whole bound tree nor the environment."""
    hub_config = Path(sys.prefix) / f"chronohub-test-{tmp_path.name}"  # as /etc/chronohub
    hub_config.mkdir()
    try:
        hub_data = tmp_path / "hub"  # not in a bound tree: nothing to cover
        hub_data.mkdir()
        hide = sandbox.hidden_by_hub({"PUBLISH_HIDE": f"{hub_data}{os.pathsep}{hub_config}"})
        assert hide == [hub_data, hub_config]
        data_dir = Path(sys.prefix) / "publish-data"  # missing: nothing to cover either
        assert sandbox.to_hide([data_dir, *hide]) == (hub_config,)
        args = sandbox.Sandbox("bwrap", None, (hub_config,)).command(["x"], tmp_path)
        assert args.index(str(hub_config)) > args.index(str(Path(sys.prefix)))
    finally:
        hub_config.rmdir()
    assert sandbox.to_hide([Path("/"), Path("/etc"), Path(sys.prefix), sandbox.PACKAGE]) == ()
    assert sandbox.hidden_by_hub({}) == []
    with pytest.raises(ValueError, match="PUBLISH_HIDE: 'etc/chronohub' is not an absolute path"):
        sandbox.hidden_by_hub({"PUBLISH_HIDE": "etc/chronohub"})


def test_the_copy_keeps_links_as_links_and_is_removed_whatever_its_modes(tmp_path: Path) -> None:
    secret = tmp_path / "state.json"
    secret.write_text("the service's secret")
    checkout = tmp_path / "checkout"
    (checkout / "data").mkdir(parents=True)
    (checkout / "data" / "x.csv").write_text("1,2\n")
    (checkout / "leak").symlink_to(secret)
    work = sandbox.copy_of(checkout)
    try:
        assert (work / "data" / "x.csv").read_text() == "1,2\n"
        # a link, still pointing where it did: inside the sandbox that path is not there
        assert (work / "leak").is_symlink()
        assert os.readlink(work / "leak") == str(secret)
        assert work.parent != tmp_path
        assert not work.is_relative_to(checkout)
        (work / "locked").mkdir()
        (work / "locked" / "f").write_text("x")
        (work / "locked").chmod(0)  # as a run may leave it
    finally:
        sandbox.discard(work)
    assert not work.parent.exists()
    assert secret.exists()
    assert (checkout / "data" / "x.csv").exists()


def test_the_opt_out_is_explicit() -> None:
    assert sandbox.enabled({}) is True
    assert sandbox.enabled({"PUBLISH_SANDBOX": "true"}) is True
    assert sandbox.enabled({"PUBLISH_SANDBOX": "false"}) is False
    assert sandbox.enabled({"PUBLISH_SANDBOX": "0"}) is False
    with pytest.raises(ValueError, match="PUBLISH_SANDBOX='maybe': true or false expected"):
        sandbox.enabled({"PUBLISH_SANDBOX": "maybe"})


async def test_without_bubblewrap_runs_are_refused_unless_opted_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await sandbox.Guard(tmp_path, enabled=False).sandbox() is None
    monkeypatch.setattr(sandbox, "bwrap", lambda: None)  # as on a host without it
    with pytest.raises(sandbox.Unavailable, match="bubblewrap is not installed") as refused:
        await sandbox.Guard(tmp_path).sandbox()
    assert "PUBLISH_SANDBOX=false" in str(refused.value)
    assert "publish_sandbox = false" in str(refused.value)
