"""The bubblewrap sandbox's command line: what a sandboxed server or kernel can see."""

from __future__ import annotations

import sys
from pathlib import Path

from hub.servers import sandbox


def _pairs(args: list[str], flag: str) -> list[tuple[str, str]]:
    return [(args[i + 1], args[i + 2]) for i, arg in enumerate(args) if arg == flag]


def test_the_sandbox_sees_the_system_the_environment_and_the_home_only(tmp_path: Path) -> None:
    home = tmp_path / "data" / "users" / "ada"
    runtime = tmp_path / "kernel-runtime"
    args = sandbox.wrap(
        "/usr/bin/bwrap", ["jupyterhub-singleuser", "--debug"],
        home=home, inside=Path("/home/ada"), writable=[runtime], unset=["JPY_PARENT_PID"],
    )  # fmt: skip
    assert args[0] == "/usr/bin/bwrap"
    assert args[-3:] == ["--", "jupyterhub-singleuser", "--debug"]
    for namespace in ("--unshare-pid", "--unshare-ipc"):
        assert namespace in args
    read_only = dict(_pairs(args, "--ro-bind-try")) | dict(_pairs(args, "--ro-bind"))
    assert read_only["/usr"] == "/usr"
    assert read_only["/etc"] == "/etc"
    assert all(Path(p) == Path(q) for p, q in read_only.items())
    assert sys.prefix in read_only or any(
        Path(sys.prefix).is_relative_to(r) for r in sandbox.SYSTEM
    )
    # read-write: the home (seen as /home/ada) and the runtime directory, nothing else
    assert _pairs(args, "--bind") == [(str(home), "/home/ada"), (str(runtime), str(runtime))]
    assert args[args.index("--proc") + 1] == "/proc"
    assert args[args.index("--tmpfs") + 1] == "/tmp"
    # /tmp first: a later tmpfs would hide what was bound under it (a checkout in /tmp)
    assert args.index("--tmpfs") < min(i for i, a in enumerate(args) if a.startswith("--ro-bind"))
    assert args[args.index("--chdir") + 1] == "/home/ada"
    assert args[args.index("--unsetenv") + 1] == "JPY_PARENT_PID"
    # the data directory is never bound
    assert not [a for a in args if str(tmp_path / "data") in a and a != str(home)]


def test_a_secret_file_inside_what_the_sandbox_sees_is_covered(tmp_path: Path) -> None:
    """The hub's configuration file, if it lies in a directory the sandbox binds (the hub's
    environment here), is replaced by an empty one; elsewhere it is not there anyway."""
    inside = Path(sys.prefix) / f"chronohub-test-{tmp_path.name}.toml"
    inside.write_text("api_token = 'secret'")
    try:
        args = sandbox.wrap("bwrap", ["x"], home=tmp_path, inside=Path("/h"), hidden=[inside])
        assert ("/dev/null", str(inside)) in _pairs(args, "--ro-bind")
    finally:
        inside.unlink()
    elsewhere = tmp_path / "chronohub.toml"
    elsewhere.write_text("api_token = 'secret'")
    args = sandbox.wrap("bwrap", ["x"], home=tmp_path, inside=Path("/h"), hidden=[elsewhere])
    assert str(elsewhere) not in [target for _, target in _pairs(args, "--ro-bind")]
