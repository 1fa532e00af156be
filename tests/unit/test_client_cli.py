"""The pure parts of ``chronohub project``: where the hub and token are found (and in what
order), the credentials file's mode, the command line's parsing and exit statuses, and what
git's words about a failed transfer mean."""

from __future__ import annotations

import http.server
import stat
import threading
from pathlib import Path

import pytest

from hub.cli import entry as hub_entry
from hubclient import api, cli, config, errors, git
from hubclient.commands import git_failure, publish, receive

HUB = "http://127.0.0.1:8000"


def test_the_spawned_servers_environment_is_found() -> None:
    env = {"JUPYTERHUB_API_URL": f"{HUB}/hub/api", "JUPYTERHUB_API_TOKEN": "server-token"}
    found = config.discover(None, None, env)
    assert (found.url, found.token) == (HUB, "server-token")
    assert found.api == f"{HUB}/hub/api"
    assert found.git_url("alice", "course") == f"{HUB}/hub/git/alice/course.git"


def test_flags_beat_the_environment_and_the_saved_login(tmp_path: Path) -> None:
    env = {
        "HOME": str(tmp_path),
        "JUPYTERHUB_API_URL": f"{HUB}/hub/api",
        "JUPYTERHUB_API_TOKEN": "server-token",
    }
    config.save(env, config.Saved("http://other:9000", "alice", "saved-token"))
    assert config.discover("http://other:9000/hub/", None, env).token == "saved-token"
    assert config.discover("http://other:9000", "flag", env).token == "flag"
    # --hub naming the server's own hub takes the server's token
    assert config.discover(HUB, None, env).token == "server-token"
    # a token is never carried to another hub than its own
    with pytest.raises(errors.Access, match="no token for http://third"):
        config.discover("http://third", None, env)
    assert config.discover("http://third", None, {**env, "CHRONOHUB_TOKEN": "t"}).token == "t"
    # ...nor CHRONOHUB_TOKEN to another hub than the CHRONOHUB_HUB it goes with
    paired = {**env, "CHRONOHUB_HUB": "http://second", "CHRONOHUB_TOKEN": "t"}
    with pytest.raises(errors.Access, match="no token for http://third"):
        config.discover("http://third", None, paired)
    assert config.discover("http://second", None, paired).token == "t"


def test_the_saved_login_is_the_last_resort(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    with pytest.raises(errors.Usage, match="chronohub login"):
        config.discover(None, None, env)
    path = config.save(env, config.Saved("http://hub.test/hub", "alice", "saved-token"))
    assert path == tmp_path / "xdg" / "chronohub" / "credentials.json"
    found = config.discover(None, None, env)
    assert (found.url, found.token) == ("http://hub.test", "saved-token")
    assert config.discover(
        None, None, {**env, "CHRONOHUB_HUB": HUB, "CHRONOHUB_TOKEN": "c"}
    ).url == (HUB)


def test_credentials_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    path = config.credentials_path(env)
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    path.chmod(0o644)  # an older, too open file is replaced, not reused
    config.save(env, config.Saved(HUB, "alice", "secret"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert config.load_saved(env) == config.Saved(HUB, "alice", "secret")
    path.write_text("not json")
    with pytest.raises(errors.Usage, match="not a credentials file"):
        config.load_saved(env)


@pytest.mark.parametrize("bad", ["hub.example.org", "ftp://hub", "http://"])
def test_a_hub_url_must_be_http(bad: str) -> None:
    with pytest.raises(errors.Usage, match="not a hub URL"):
        config.normalize(bad)


def test_project_urls() -> None:
    assert config.project_of(f"{HUB}/hub/git/alice/course.git") == (HUB, "alice", "course")
    assert config.project_of("https://example.org/alice/course.git") is None
    hub = config.Hub(HUB, "t", "test")
    assert config.for_url(hub, f"{HUB}/hub/git/a/b.git", {}) is hub
    assert config.for_url(hub, "https://example.org/hub/git/a/b.git", {}) is None


def test_the_token_goes_to_the_hubs_git_urls_only() -> None:
    repo = git.Git(Path("."), auth_url=f"{HUB}/hub/git/", token="tok", environ={})
    env = repo.env()
    assert env["GIT_CONFIG_COUNT"] == "1"
    assert env["GIT_CONFIG_KEY_0"] == f"http.{HUB}/hub/git/.extraHeader"
    assert env["GIT_CONFIG_VALUE_0"] == "Authorization: token tok"
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    # configuration already in the environment is kept, the header added after it
    kept = git.Git(Path("."), f"{HUB}/hub/git/", "tok", environ={"GIT_CONFIG_COUNT": "2"}).env()
    assert (kept["GIT_CONFIG_COUNT"], kept["GIT_CONFIG_KEY_2"]) == (
        "3",
        f"http.{HUB}/hub/git/.extraHeader",
    )
    assert "GIT_CONFIG_COUNT" not in git.Git(Path("."), environ={}).env()


@pytest.mark.parametrize(
    ("said", "kind", "code"),
    [
        ("fatal: unable to access: Failed to connect to 127.0.0.1", errors.Unreachable, 4),
        ("remote: alice has read-only access to x/y; ask", errors.Access, 3),
        ("remote: project x/y not found\nfatal: repository not found", errors.Gone, 3),
        ("remote: credentials are needed for x/y", errors.Access, 3),
        (" ! [rejected]        HEAD -> main (fetch first)", errors.NeedsPull, 1),
        ("fatal: something else", errors.Failed, 5),
    ],
)
def test_what_gits_words_mean(said: str, kind: type[errors.ClientError], code: int) -> None:
    hub = config.Hub(HUB, "t", "test")
    failure = git_failure(git.GitError(["push", "origin"], 128, said), "x/y", hub)
    assert type(failure) is kind
    assert failure.code == code


def test_parsing() -> None:
    args = cli.parser().parse_args(
        ["project", "push", "--to", "bob,carol", "--to", "dan", "--team", "physics", "--write"]
    )
    assert (cli._flat(args.to), cli._flat(args.team), args.write) == (
        ["bob", "carol", "dan"],
        ["physics"],
        True,
    )
    args = cli.parser().parse_args(
        ["project", "pull", "--pick-file", "a=b.ipynb=ours", "--pick", "theirs"]
    )
    assert (args.pick_file, args.pick) == ([("a=b.ipynb", "ours")], "theirs")


@pytest.mark.parametrize(
    "argv",
    [
        ["project", "pull", "--pick", "mine"],
        ["project", "pull", "--pick-file", "nb.ipynb"],
        ["project", "pull", "--pick-file", "nb.ipynb=both"],
        ["project", "push", "--to", ","],
        ["project", "log", "-n", "0"],
        ["project"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_the_hub_command_hands_project_and_login_over(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        hub_entry.main(["project", "pull", "--help"])
    assert exited.value.code == 0
    assert "--pick-file" in capsys.readouterr().out


def test_names_and_sources(tmp_path: Path) -> None:
    assert publish.split_name(None, tmp_path / "course", "alice") == ("alice", "course")
    assert publish.split_name("physics/lab", tmp_path, "alice") == ("physics", "lab")
    with pytest.raises(errors.Usage, match="cannot be a project name"):
        publish.split_name(None, tmp_path / "my notes", "alice")
    with pytest.raises(errors.Usage, match="cannot be a project name"):
        publish.split_name("x.git", tmp_path, "alice")
    assert not receive.is_url("alice/course")
    for url in ("https://example.org/a/b.git", "file:///srv/x", "/srv/x", "git@host:a/b"):
        assert receive.is_url(url), url
    assert receive.default_folder("course", {"HOME": "/home/a"}) == Path("/home/a/projects/course")


def test_a_redirect_is_not_followed_with_the_token() -> None:
    """urllib would send the Authorization header on to wherever a redirect points."""
    seen: list[str | None] = []

    class Elsewhere(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    class Redirecting(Elsewhere):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{target.server_port}/hub/api/user")
            self.end_headers()

    target = http.server.HTTPServer(("127.0.0.1", 0), Elsewhere)
    source = http.server.HTTPServer(("127.0.0.1", 0), Redirecting)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (target, source)]
    for thread in threads:
        thread.start()
    try:
        hub = config.Hub(f"http://127.0.0.1:{source.server_port}", "secret-token", "--hub")
        with pytest.raises(errors.Usage, match=r"redirect to http://127\.0\.0\.1"):
            api.Api(hub).call("GET", "/user")
    finally:
        for server in (target, source):
            server.shutdown()
            server.server_close()
    assert seen == []  # the token never went to the other address
