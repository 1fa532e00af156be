"""The reference deployment of deploy/ansible/, for real: ``ansible-lint``, ``ansible-playbook
--syntax-check``, and one run of the playbook against this machine (``connection: local``)
into a throwaway prefix, then a second run that changes nothing.

The run installs everything under a temporary directory: chronohub from a git checkout of
this repository's HEAD into a virtualenv, the environment file, chronohub.toml (with the
grader as a managed service), the systemd unit and logrotate file, a self-signed certificate
and the nginx site; it makes chronohub's role and database in a throwaway cluster of Debian's
PostgreSQL (on a free port) with deploy/nginx's postgres-setup.sql and adds the pg_hba line.
There is no systemd here, so the test sets ``chronohub_systemd: false`` (files installed,
nothing enabled, started or reloaded through systemd; PostgreSQL reloaded with ``pg_ctl``) and
starts what the playbook installed itself: the virtualenv's ``chronohub serve`` with the
installed environment file, and nginx with the installed site. The hub must then answer
through nginx over https, and the grader it started under /services/grader/; the installed
unit passes ``systemd-analyze verify`` where that program is.

Installing: the throwaway virtualenv gets a ``.pth`` line naming this test run's
site-packages and the playbook's ``chronohub_pip_extra_args`` is ``--no-deps``: pip builds and
installs chronohub itself (the part under test) and finds its hundred-odd dependencies where
the test run has them, the very versions it tests with — installing them again would take
minutes and a package index the CI machine need not reach.

The playbook's PostgreSQL tasks become the ``postgres`` account (``su``), which takes root:
the CI machine runs as root; elsewhere the real run is skipped with that reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import aiohttp
import pytest

from tests import helpers, ports
from tests.helpers import wait_for
from tests.integration import deploy_fixtures as deploy

pytestmark = [pytest.mark.integration, pytest.mark.interop]

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK_DIR = REPO / "deploy" / "ansible"
ANSIBLE_PLAYBOOK = shutil.which("ansible-playbook")
ANSIBLE_LINT = shutil.which("ansible-lint")
needs_ansible = pytest.mark.skipif(
    ANSIBLE_PLAYBOOK is None, reason="Debian's ansible is not installed: `make test` installs it"
)
SINGLEUSER = str(Path(sys.executable).parent / "jupyterhub-singleuser")
RECAP = re.compile(r"^localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def _playbook(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    assert ANSIBLE_PLAYBOOK is not None
    env = os.environ | {
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        # The playbook's git clones this checkout, which a CI runner's account may own while the
        # test runs as root: git refuses such a repository unless it is declared safe.
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "safe.directory",
        "GIT_CONFIG_VALUE_0": str(REPO),
    }
    return subprocess.run(
        [ANSIBLE_PLAYBOOK, *args], cwd=PLAYBOOK_DIR, env=env, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


@needs_ansible
def test_the_playbook_parses() -> None:
    result = _playbook("-i", "inventory.example", "--syntax-check", "site.yml", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(
    ANSIBLE_LINT is None, reason="Debian's ansible-lint is not installed: `make test` installs it"
)
def test_ansible_lint_is_clean() -> None:
    assert ANSIBLE_LINT is not None
    result = subprocess.run(
        [ANSIBLE_LINT, "--nocolor", "site.yml"], cwd=PLAYBOOK_DIR, capture_output=True,
        text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@needs_ansible
@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"chronohub_install_from": "svn"}, "chronohub_install_from must be git or wheel, not svn"),
        ({"chronohub_git_repo": ""}, "chronohub_install_from: git needs chronohub_git_repo"),
        ({"chronohub_tls": "acme"}, "chronohub_tls must be letsencrypt or selfsigned, not acme"),
        ({"chronohub_systemd": False}, "chronohub_tls: letsencrypt needs chronohub_systemd"),
        ({"chronohub_github_client_id": "an-id"}, "GitHub logins need both"),
        ({"chronohub_hostname": "hub.example.org; rm"}, "chronohub_hostname must be a DNS name"),
    ],
)
def test_bad_variables_are_refused_before_anything_is_done(
    tmp_path: Path, variables: dict[str, object], message: str
) -> None:
    inventory = tmp_path / "inventory"
    inventory.write_text("[chronohub]\nlocalhost ansible_connection=local\n")
    given = {"chronohub_git_repo": str(REPO), "chronohub_install_packages": False} | variables
    result = _playbook("-i", str(inventory), "site.yml", "-e", json.dumps(given), timeout=120)
    assert result.returncode != 0
    assert message in result.stdout, result.stdout
    assert _recap(result.stdout, failed=1)[1] == 0


def _recap(output: str, failed: int = 0) -> tuple[int, int]:
    """(ok, changed) of the play recap's localhost line; none unreachable, ``failed`` failed."""
    for line in output.splitlines():
        if match := RECAP.match(line):
            ok, changed, unreachable, failures = map(int, match.groups())
            assert (unreachable, failures) == (0, failed), output
            return ok, changed
    raise AssertionError(f"no play recap in:\n{output}")


def _environment_file(path: Path) -> dict[str, str]:
    """The installed environment file, read as systemd's EnvironmentFile= reads it."""
    env = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value[1:-1] if value[:1] in "'\"" and value[-1:] == value[:1] else value
    return env


@needs_ansible
@deploy.needs_nginx
@pytest.mark.skipif(
    os.geteuid() != 0, reason="the playbook becomes the postgres account (su): that takes root"
)
@pytest.mark.timeout(600)
async def test_a_real_run_serves_the_hub_through_nginx_and_a_second_run_changes_nothing() -> None:
    # Not pytest's tmp_path: PostgreSQL's account must pass through it (mode 0711 here).
    root = Path(tempfile.mkdtemp(prefix="chronohub-ansible-"))
    root.chmod(0o711)
    try:
        async for cluster in deploy.debian_cluster(root):
            await _run_and_serve(root, cluster)
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def _run_and_serve(root: Path, cluster: deploy.Cluster) -> None:
    http, https, proxy_port, hub_port, grader_port = (ports.free_port() for _ in range(5))
    public = f"https://127.0.0.1:{https}"
    venv = root / "opt" / "venv"
    # The throwaway virtualenv sees this test run's packages (see the module's docstring).
    subprocess.run(
        [sys._base_executable, "-m", "venv", str(venv)], check=True, capture_output=True,
        timeout=120,
    )  # fmt: skip
    purelib = Path(sysconfig.get_paths(vars={"base": str(venv)})["purelib"])
    (purelib / "chronohub-test-run.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    nginx_root = root / "nginx"
    variables = {
        "chronohub_hostname": "127.0.0.1",
        "chronohub_public_url": f"{public}/",
        "chronohub_admin_users": ["ada"],
        "chronohub_install_from": "git",
        "chronohub_git_repo": str(REPO),
        "chronohub_git_version": head,
        "chronohub_install_dir": str(root / "opt"),
        "chronohub_python": sys._base_executable,
        "chronohub_pip_extra_args": "--no-deps",
        "chronohub_user": "root",
        "chronohub_create_account": False,
        "chronohub_config_dir": str(root / "etc"),
        "chronohub_data_dir": str(root / "data"),
        "chronohub_systemd_dir": str(root / "systemd"),
        "chronohub_logrotate_dir": str(root / "logrotate.d"),
        "chronohub_credentials_dir": str(root / "credentials"),
        "chronohub_install_packages": False,
        "chronohub_systemd": False,
        "chronohub_pg_socket_dir": str(cluster.socket_dir),
        "chronohub_pg_port": cluster.port,
        "chronohub_pg_bindir": str(cluster.bin_dir),
        "chronohub_pg_datadir": str(cluster.data),
        "chronohub_pg_hba": str(cluster.data / "pg_hba.conf"),
        "chronohub_proxy_port": proxy_port,
        "chronohub_hub_port": hub_port,
        "chronohub_tls": "selfsigned",
        "chronohub_cert_dir": str(root / "certs"),
        "chronohub_letsencrypt_webroot": str(root / "webroot"),
        "chronohub_nginx_sites_available": str(nginx_root / "sites-available"),
        "chronohub_nginx_sites_enabled": str(nginx_root / "sites-enabled"),
        "chronohub_nginx_log_dir": str(nginx_root / "logs"),
        "chronohub_nginx_http_listen": f"127.0.0.1:{http}",
        "chronohub_nginx_https_listen": f"127.0.0.1:{https}",
        "chronohub_nginx_ipv6": False,
        # GitHub logins: the hub's login page then offers GitHub and sends people there (no
        # request reaches GitHub in this test).
        "chronohub_github_client_id": "chronohub-test-client",
        "chronohub_github_client_secret": "chronohub-test-secret",
        "chronohub_github_allowed_organizations": ["example-org"],
        # The root drop-in is written (no system account is made: chronohub_system_users empty).
        "chronohub_system_accounts": True,
        "chronohub_grader": True,
        "chronohub_grader_port": grader_port,
        # The dependencies' programs are in this test run's bin/, not the throwaway venv's.
        "chronohub_extra_config": f"spawner_cmd = {json.dumps([SINGLEUSER])}",
    }
    for sub in ("systemd", "logrotate.d", "nginx/sites-available", "nginx/sites-enabled"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "variables.json").write_text(json.dumps(variables))
    (root / "inventory").write_text("[chronohub]\nlocalhost ansible_connection=local\n")
    run = ("-i", str(root / "inventory"), "site.yml", "-e", f"@{root / 'variables.json'}")

    first = _playbook(*run)
    assert first.returncode == 0, first.stdout + first.stderr
    assert _recap(first.stdout)[1] > 0

    # What it installed: the unit and logrotate file from deploy/nginx with this prefix's paths,
    # the site with this test's ports, chronohub in the throwaway virtualenv.
    unit = (root / "systemd" / "chronohub.service").read_text()
    assert f"ExecStart={venv}/bin/chronohub serve" in unit
    assert f"EnvironmentFile={root}/etc/chronohub.env" in unit
    assert f"{root}/data/logs/*.log" in (root / "logrotate.d" / "chronohub").read_text()
    env_file = _environment_file(root / "etc" / "chronohub.env")
    assert env_file["CHRONOHUB_PUBLIC_URL"] == f"{public}/"
    assert env_file["CHRONOHUB_TRUSTED_PROXIES"] == '["127.0.0.1/32","::1/128"]'
    assert (root / "etc" / "chronohub.env").stat().st_mode & 0o777 == 0o640
    assert (root / "etc" / "chronohub.toml").stat().st_mode & 0o777 == 0o640
    if deploy.SYSTEMD_ANALYZE is not None:  # the installed unit, as systemd would read it
        verify = subprocess.run(
            [deploy.SYSTEMD_ANALYZE, "verify", str(root / "systemd" / "chronohub.service")],
            capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
        )  # fmt: skip
        assert (verify.returncode, verify.stderr) == (0, ""), verify.stderr
    drop_in = root / "systemd" / "chronohub.service.d" / "system-accounts.conf"
    assert "\nUser=\n" in drop_in.read_text()
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import hub; print(hub.__file__)"], cwd=root,
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    assert installed.startswith(str(venv)), installed
    assert "host    chronohub" in (cluster.data / "pg_hba.conf").read_text()

    main = deploy.nginx_config(nginx_root, f"include {nginx_root}/sites-enabled/*;\n")
    env = helpers.hub_base_env() | env_file
    hub_log, nginx_log = root / "hub.log", root / "nginx.log"
    with (
        open(hub_log, "ab") as log,
        open(nginx_log, "ab") as nginx_out,
        deploy.stopping(
            subprocess.Popen(
                [str(venv / "bin" / "chronohub"), "serve"],
                env=env,
                cwd=root / "data",
                stdout=log,
                stderr=log,
                start_new_session=True,
            ),
            "chronohub",
        ) as hub,  # fmt: skip
        deploy.stopping(
            subprocess.Popen(
                deploy.nginx_command(main, "-g", "daemon off;"), stdout=nginx_out, stderr=nginx_out
            ),
            "nginx",
        ) as nginx,
    ):
        tls = ssl.create_default_context(cafile=str(root / "certs" / "fullchain.pem"))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls)) as session:

            async def answers(path: str, statuses: tuple[int, ...]) -> bool:
                assert hub.poll() is None, hub_log.read_text()
                assert nginx.poll() is None, nginx_log.read_text()
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{public}{path}", allow_redirects=False) as reply:
                        return reply.status in statuses
                return False

            await wait_for(lambda: answers("/hub/login", (200,)), timeout_s=90, every_s=0.2)
            async with session.get(f"{public}/hub/login") as reply:
                assert reply.status == 200
                assert reply.headers["Strict-Transport-Security"] == "max-age=63072000"
                assert "Sign in with GitHub" in await reply.text()
            async with session.get(f"{public}/hub/oauth_login", allow_redirects=False) as reply:
                assert reply.status == 302
                location = reply.headers["Location"]
                assert location.startswith("https://github.com/login/oauth/authorize?"), location
                assert "client_id=chronohub-test-client" in location
            # The grader, started by the hub as a managed service, sends a visitor to log in.
            await wait_for(
                lambda: answers("/services/grader/", (302, 303)), timeout_s=90, every_s=0.2
            )

    second = _playbook(*run)
    assert second.returncode == 0, second.stdout + second.stderr
    assert _recap(second.stdout)[1] == 0, second.stdout
