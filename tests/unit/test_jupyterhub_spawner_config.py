"""Choosing and configuring a JupyterHub spawner class (``hub.servers.jupyterhub_config``), and
what the adapter hands the class (``hub.servers.jupyterhub_adapter``): no database, no process."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from jupyterhub.spawner import LocalProcessSpawner, SimpleLocalProcessSpawner, SpawnException
from traitlets import Unicode
from traitlets.config import Config

from events.catalog import servers as server_events
from hub import settings as hub_settings
from hub import startup
from hub.servers import config as servers_config
from hub.servers import jupyterhub_adapter, jupyterhub_config, spawner


def test_an_entry_point_name_and_a_dotted_path_name_the_class() -> None:
    assert jupyterhub_config.load_class("simple") is SimpleLocalProcessSpawner
    assert jupyterhub_config.load_class("localprocess") is LocalProcessSpawner
    assert (
        jupyterhub_config.load_class("jupyterhub.spawner.LocalProcessSpawner")
        is LocalProcessSpawner
    )


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("nosuchspawner", "neither a spawner entry point"),
        ("nosuchmodule.Spawner", "module 'nosuchmodule' cannot be imported"),
        ("jupyterhub.spawner.NoSuchSpawner", "has no 'NoSuchSpawner'"),
        ("collections.OrderedDict", "is not a JupyterHub Spawner subclass"),
        ("jupyterhub.spawner.random_port", "is not a JupyterHub Spawner subclass"),
    ],
)
def test_a_class_that_cannot_be_used_is_refused_by_name(name: str, says: str) -> None:
    with pytest.raises(jupyterhub_config.SpawnerConfigError, match=says) as caught:
        jupyterhub_config.load_class(name)
    assert repr(name) in caught.value.message


def test_the_toml_table_sets_the_class_traits() -> None:
    adapter = jupyterhub_adapter.JupyterHubSpawner.from_settings(
        "simple", {"cmd": ["my-server"], "start_timeout": 12}, None
    )
    made = adapter.make(user="ann", server_name="")
    assert made.cmd == ["my-server"]
    assert made.start_timeout == 12


def test_an_unknown_trait_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(jupyterhub_config.SpawnerConfigError, match="'imagee'"):
        jupyterhub_adapter.JupyterHubSpawner.from_settings("simple", {"imagee": "x"}, None)
    file = tmp_path / "jupyterhub_config.py"
    file.write_text("c.LocalProcessSpawner.shell_cmdd = ['bash', '-c']\n")
    with pytest.raises(
        jupyterhub_config.SpawnerConfigError, match=r"LocalProcessSpawner has no .*'shell_cmdd'"
    ):
        jupyterhub_adapter.JupyterHubSpawner.from_settings("simple", {}, file)


def test_a_jupyterhub_config_file_configures_the_class_and_the_table_wins(
    tmp_path: Path,
) -> None:
    file = tmp_path / "jupyterhub_config.py"
    file.write_text(
        "c.Spawner.start_timeout = 33\n"
        "c.SimpleLocalProcessSpawner.cmd = ['from-file']\n"
        "c.JupyterHub.spawner_class = 'simple'  # other sections are JupyterHub's, ignored\n"
    )
    adapter = jupyterhub_adapter.JupyterHubSpawner.from_settings(
        "simple", {"cmd": ["from-table"]}, file
    )
    made = adapter.make(user="ann", server_name="")
    assert made.start_timeout == 33
    assert made.cmd == ["from-table"]


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.py"
    with pytest.raises(jupyterhub_config.SpawnerConfigError, match="does not exist"):
        jupyterhub_adapter.JupyterHubSpawner.from_settings("simple", {}, missing)


def test_the_hub_refuses_to_start_with_a_bad_spawner_class() -> None:
    config = hub_settings.Settings(
        database_url="postgresql://unused", spawner_class="collections.OrderedDict"
    )
    with pytest.raises(startup.StartupError, match="not a JupyterHub Spawner subclass"):
        servers_config.jupyterhub_spawner(config)
    no_class = hub_settings.Settings(database_url="postgresql://x")
    assert servers_config.jupyterhub_spawner(no_class) is None


def test_the_spawner_gets_what_jupyterhubs_base_expects() -> None:
    adapter = jupyterhub_adapter.JupyterHubSpawner.from_settings("simple", {}, None)
    user_id = UUID("12345678-1234-5678-1234-567812345678")
    env = {
        "JUPYTERHUB_API_TOKEN": "server-secret",
        "JUPYTERHUB_API_URL": "http://127.0.0.1:8123/hub/api",
        "JUPYTERHUB_PUBLIC_URL": "https://hub.example.org/user/ann/lab/",
        "JUPYTERHUB_PUBLIC_HUB_URL": "https://hub.example.org/hub/",
    }
    made = adapter.make(
        user="ann", server_name="lab", user_id=user_id, groups=("physics",), env=env
    )
    assert made.name == "lab"
    assert made.user.name == "ann"
    assert made.user.id == jupyterhub_adapter.user_number(user_id)
    assert [g.name for g in made.user.groups] == ["physics"]
    assert made.user.url == "/user/ann/"
    assert made.server.base_url == "/user/ann/lab/"
    assert made.hub.api_url == "http://127.0.0.1:8123/hub/api"
    assert made.hub.base_url == "/hub/"
    assert made.api_token == "server-secret"
    assert made.oauth_client_id == "jupyterhub-user-ann-lab"
    assert made.oauth_access_scopes == [
        "access:servers!server=ann/lab",
        "access:servers!user=ann",
    ]
    made.port = 9999
    contract = made.get_env()  # JupyterHub's own environment contract, from the above
    assert contract["JUPYTERHUB_API_URL"] == "http://127.0.0.1:8123/hub/api"
    assert contract["JUPYTERHUB_SERVICE_PREFIX"] == "/user/ann/lab/"
    assert contract["JUPYTERHUB_OAUTH_CALLBACK_URL"] == "/user/ann/lab/oauth_callback"
    assert contract["JUPYTERHUB_ACTIVITY_URL"] == (
        "http://127.0.0.1:8123/hub/api/users/ann/activity"
    )
    assert contract["JUPYTERHUB_BASE_URL"] == "/"
    assert contract["JUPYTERHUB_PUBLIC_URL"] == "https://hub.example.org/user/ann/lab/"


def test_what_start_returns_becomes_the_servers_url() -> None:
    spec = spawner.SpawnSpec(
        user="ann",
        server_name="",
        command=(),
        env={},
        workdir=Path("/nonexistent"),
        log_path=Path("/nonexistent"),
        ip="127.0.0.1",
        port=1,
    )
    made = jupyterhub_adapter.JupyterHubSpawner.from_settings("simple", {}, None).make(
        user="ann", server_name=""
    )
    assert (
        jupyterhub_adapter.server_url(("10.0.0.5", 8888), made, spec)
        == "http://10.0.0.5:8888/user/ann/"
    )
    assert (
        jupyterhub_adapter.server_url("https://pod-ann.ns.svc:8888", made, spec)
        == "https://pod-ann.ns.svc:8888/user/ann/"
    )
    assert jupyterhub_adapter.server_url(("::1", 8888), made, spec) == "http://[::1]:8888/user/ann/"


def test_a_spawners_http_error_below_500_is_the_users_fault() -> None:
    refused = jupyterhub_adapter.failure(
        SpawnException("that image is not allowed", reason="bad-image", status_code=403)
    )
    assert isinstance(refused, spawner.PolicyError)
    assert refused.status == 403
    assert refused.message == "that image is not allowed"
    broken = jupyterhub_adapter.failure(RuntimeError("the cluster is down"))
    assert isinstance(broken, spawner.SystemFailure)
    assert broken.message == "RuntimeError: the cluster is down"


class ProgressSpawner(SimpleLocalProcessSpawner):  # type: ignore[misc]
    """A spawner that reports its own progress while its start waits to be let go."""

    let_go: asyncio.Event

    async def start(self) -> Any:
        await self.let_go.wait()
        return ("127.0.0.1", 1)

    async def progress(self) -> Any:
        yield {"progress": 20, "message": "Pulling the image"}
        yield {"progress": 80, "message": "Pod scheduled", "html_message": "<b>Pod</b> scheduled"}
        self.let_go.set()


async def test_a_spawners_progress_goes_to_the_spawns_progress() -> None:
    ProgressSpawner.let_go = asyncio.Event()
    adapter = jupyterhub_adapter.JupyterHubSpawner(ProgressSpawner, Config())
    seen: list[dict[str, Any]] = []
    spec = spawner.SpawnSpec(
        user="ann",
        server_name="",
        command=(),
        env={},
        workdir=Path("/nonexistent"),
        log_path=Path("/nonexistent"),
        ip="127.0.0.1",
        port=1,
        report=seen.append,
    )
    server = await adapter.start(spec)
    assert isinstance(server, spawner.LocatedProcess)
    assert server.url == "http://127.0.0.1:1/user/ann/"
    # chronohub's own steps are 10 (spawning) and 50 (started): the spawner's fit between.
    assert seen == [
        {"progress": 20, "message": "Pulling the image"},
        {"progress": 49, "message": "Pod scheduled", "html_message": "<b>Pod</b> scheduled"},
    ]


def test_a_state_key_named_like_a_secret_stays_out_of_the_event_log() -> None:
    """A spawner class defines its own state: what is named like a secret is left out before
    the state goes into ``server.started``, which refuses it anyway."""

    class Keeps(SimpleLocalProcessSpawner):  # type: ignore[misc]
        def get_state(self) -> dict[str, Any]:
            return {"pod_name": "jupyter-ann", "api_token": "s3cret", "extra": {"password": "x"}}

    made = jupyterhub_adapter.JupyterHubSpawner.from_settings("simple", {}, None).make(
        user="ann", server_name=""
    )
    keeps = Keeps(user=made.user, hub=made.hub)
    assert jupyterhub_adapter.AdaptedServer(keeps, "http://x/").state() == {
        "pod_name": "jupyter-ann",
        "extra": {},
    }
    with pytest.raises(ValueError, match="'api_token' is named like a secret"):
        server_events.ServerStarted(
            user_id=UUID(int=1), user="ann", server_name="", url="http://x/",
            spawner_state={"api_token": "s3cret"},
        )  # fmt: skip


# --- configuration errors, told at start-up by name (never a traceback at the first spawn) ---


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ({"start_timeout": "soon"}, r"SimpleLocalProcessSpawner.start_timeout = 'soon' is refused"),
        ({"cmd": 42}, r"SimpleLocalProcessSpawner.cmd = 42 is refused"),
        ({"environment": ["A=1"]}, r"environment = \['A=1'\] is refused"),
    ],
)
def test_a_trait_value_of_the_wrong_type_is_refused_at_start_up(
    table: dict[str, Any], says: str
) -> None:
    with pytest.raises(jupyterhub_config.SpawnerConfigError, match=says):
        jupyterhub_adapter.JupyterHubSpawner.from_settings("simple", table, None)


def test_a_wrong_value_in_the_config_file_is_refused_and_a_lazy_one_passes(
    tmp_path: Path,
) -> None:
    file = tmp_path / "jupyterhub_config.py"
    file.write_text("c.Spawner.port = 'eighty'\n")
    with pytest.raises(jupyterhub_config.SpawnerConfigError, match=r"Spawner.port = 'eighty'"):
        jupyterhub_adapter.JupyterHubSpawner.from_settings("simple", {}, file)
    file.write_text("c.Spawner.args.append('--debug')\n")  # a LazyConfigValue: applied later
    made = jupyterhub_adapter.JupyterHubSpawner.from_settings("simple", {}, file).make(
        user="ann", server_name=""
    )
    assert made.args == ["--debug"]


@pytest.mark.parametrize(
    ("code", "says"),
    [
        ("c.Spawner.cmd = [\n", "SyntaxError"),
        ("raise RuntimeError('no config today')\n", "RuntimeError: no config today"),
        ("import no_such_module_here\n", "ModuleNotFoundError"),
    ],
)
def test_a_config_file_that_fails_is_named_with_its_error(
    tmp_path: Path, code: str, says: str
) -> None:
    file = tmp_path / "jupyterhub_config.py"
    file.write_text(code)
    with pytest.raises(jupyterhub_config.SpawnerConfigError, match=says) as caught:
        jupyterhub_adapter.JupyterHubSpawner.from_settings("simple", {}, file)
    assert str(file) in caught.value.message


def test_serve_reports_a_bad_spawner_configuration_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from hub.cli import main as cli

    file = tmp_path / "jupyterhub_config.py"
    file.write_text("c.Spawner.cmd = [\n")
    for key, value in {
        "CHRONOHUB_DATA_DIR": str(tmp_path / "data"),
        "CHRONOHUB_PORT": "0",
        "CHRONOHUB_HUB_PORT": "0",
        "CHRONOHUB_SPAWNER_CLASS": "simple",
        "CHRONOHUB_SPAWNER_CONFIG_FILE": str(file),
    }.items():
        monkeypatch.setenv(key, value)
    assert cli.main(["serve"]) == 2
    said = capsys.readouterr().err
    assert "Traceback" not in said
    assert "spawner_config_file" in said
    assert "SyntaxError" in said


def test_the_authenticators_configuration_errors_stop_the_start_as_startup_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hub import context
    from hub.auth import login

    def hub_with(**overrides: Any) -> context.Hub:
        config = hub_settings.Settings(data_dir=tmp_path, cookie_secret="c" * 64, **overrides)
        return context.Hub(settings=config, store=None, database="")  # type: ignore[arg-type]

    with pytest.raises(startup.StartupError, match="'no-such-entry-point' is neither"):
        login.build(hub_with(authenticator_class="no-such-entry-point"))
    with pytest.raises(startup.StartupError, match="refused its configuration"):
        login.build(
            hub_with(
                authenticator_class="pam",
                authenticator_config={"PAMAuthenticator": {"open_sessions": "maybe"}},
            )
        )
    broken = tmp_path / "jupyterhub_config.py"
    broken.write_text("c.Authenticator.admin_users = {\n")
    with pytest.raises(startup.StartupError, match="SyntaxError"):
        login.build(hub_with(authenticator_class="pam", authenticator_config_file=broken))
    monkeypatch.delenv("JUPYTERHUB_CRYPT_KEY", raising=False)
    with pytest.raises(startup.StartupError, match="set crypt_key or JUPYTERHUB_CRYPT_KEY"):
        login.build(
            hub_with(
                authenticator_class="generic-oauth",
                authenticator_config={"GenericOAuthenticator": {"enable_auth_state": True}},
            )
        )


class WildcardSpawner(SimpleLocalProcessSpawner):  # type: ignore[misc]
    """A class whose servers listen on every address by default (as KubeSpawner's pods do)."""

    ip = Unicode("0.0.0.0", config=True)

    async def start(self) -> Any:
        return (self.ip, self.port)


class UnsetIpSpawner(WildcardSpawner):
    """A class that leaves its ip to the hub."""

    ip = Unicode("", config=True)


@pytest.mark.parametrize(
    ("cls", "config", "listens_on"),
    [
        (WildcardSpawner, Config(), "0.0.0.0"),
        (WildcardSpawner, Config({"Spawner": {"ip": "10.1.2.3"}}), "10.1.2.3"),
        (UnsetIpSpawner, Config(), "127.0.0.9"),
        (UnsetIpSpawner, Config({"UnsetIpSpawner": {"ip": "10.1.2.3"}}), "10.1.2.3"),
    ],
)
async def test_the_class_default_ip_stands_and_only_an_empty_one_gets_spawner_ip(
    cls: type[SimpleLocalProcessSpawner], config: Config, listens_on: str
) -> None:
    spec = spawner.SpawnSpec(
        user="ann",
        server_name="",
        command=(),
        env={},
        workdir=Path("/nonexistent"),
        log_path=Path("/nonexistent"),
        ip="127.0.0.9",
        port=4321,
    )
    server = await jupyterhub_adapter.JupyterHubSpawner(cls, config).start(spec)
    assert isinstance(server, jupyterhub_adapter.AdaptedServer)
    assert server.spawner.ip == listens_on


async def test_the_authenticators_pre_spawn_part_runs_before_start_and_its_failure_is_named() -> (
    None
):
    spec = spawner.SpawnSpec(
        user="ann",
        server_name="",
        command=(),
        env={},
        workdir=Path("/nonexistent"),
        log_path=Path("/nonexistent"),
        ip="127.0.0.9",
        port=4321,
        user_id=UUID(int=7),
    )
    seen: list[tuple[UUID, str]] = []

    async def pre_spawn(user_id: UUID, jh: Any) -> None:
        seen.append((user_id, jh.user.name))
        jh.environment["UPSTREAM_TOKEN"] = "from auth_state"

    adapter = jupyterhub_adapter.JupyterHubSpawner(WildcardSpawner, Config())
    adapter.pre_spawn = pre_spawn
    server = await adapter.start(spec)
    assert isinstance(server, jupyterhub_adapter.AdaptedServer)
    assert seen == [(UUID(int=7), "ann")]
    assert server.spawner.get_env()["UPSTREAM_TOKEN"] == "from auth_state"

    async def refuses(user_id: UUID, jh: Any) -> None:
        raise RuntimeError("no upstream token in auth_state")

    adapter.pre_spawn = refuses
    with pytest.raises(spawner.SystemFailure, match="RuntimeError: no upstream token"):
        await adapter.start(spec)
