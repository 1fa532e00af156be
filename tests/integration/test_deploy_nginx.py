"""The reference deployment of deploy/nginx/, for real: Debian's PostgreSQL and nginx, on
loopback, with a self-signed certificate in place of Let's Encrypt's.

A throwaway PostgreSQL cluster (Debian's ``postgresql`` package, its own ``initdb`` into a
temporary directory, a free port) gets chronohub's role and database from the shipped
``postgres-setup.sql``; nginx runs the shipped site, rendered with only its listen ports, the
hub's address, the certificate's and webroot's paths and the log paths changed; ``chronohub
serve`` runs on that database with the shipped environment file's settings (its
``trusted_proxies``: loopback's 127.0.0.1 and ::1 only) and ``public_url`` at nginx. Then
everything goes through nginx over https: the login form, a real ``jupyterhub-singleuser``
spawned and reached (HTTP and a websocket under ``/user/``), a collaboration room over
``wss://``, the real git CLI cloning and pushing 20 MB, the audit stream's events arriving at
once, and the client address the hub records being the one nginx saw (the browser connects
from 127.0.0.2 and claims another address, which nginx drops). One PostgreSQL, one hub and
one nginx serve every test of the module.

Users' servers run in single-user mode here, whoever runs the tests: whose account they run
as (sandbox, own account) is tests/integration/test_isolation.py's subject; this one's is the
path through nginx.

``nginx -t`` on the rendered site needs only nginx and openssl, ``systemd-analyze verify`` on
the unit only systemd: they run wherever those are.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import os
import pwd
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pycrdt
import pytest
import pytest_asyncio

from collab import client as collab_client
from hub.auth import login_cookies
from tests import ports
from tests.helpers import hub_process_env, service_toml, wait_for
from tests.integration import deploy_fixtures as deploy
from tests.integration.browser import PASSWORD, Browser
from tests.integration.git_client import Git, with_token

pytestmark = [pytest.mark.integration, pytest.mark.interop]

SINGLEUSER = str(Path(sys.executable).parent / "jupyterhub-singleuser")
TOKEN = "deploy-operator-secret-0123456789abcdef"
# The browser connects from this loopback address: nginx sees it, and it is no trusted proxy.
CLIENT_ADDRESS = "127.0.0.2"


@deploy.needs_nginx
def test_nginx_accepts_the_shipped_site(tmp_path: Path) -> None:
    """``nginx -t``: the shipped site parses and loads with Debian's nginx."""
    certs, _ = deploy.self_signed(tmp_path / "certs")
    site = deploy.render_site(
        tmp_path, http=ports.free_port(), https=ports.free_port(), upstream=ports.free_port(),
        certs=certs.parent, webroot=tmp_path / "webroot",
    )  # fmt: skip
    main = deploy.nginx_config(tmp_path, site)
    result = subprocess.run(
        deploy.nginx_command(main, "-t"), capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    assert "warn" not in result.stderr, result.stderr


@pytest.mark.skipif(deploy.SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_shipped_unit(tmp_path: Path) -> None:
    """``systemd-analyze verify``: every directive of the unit is known to this systemd and
    well formed (only the program's path changed, to this environment's ``chronohub``)."""
    text = (deploy.DEPLOY / "chronohub.service").read_text()
    program = "/opt/chronohub/venv/bin/chronohub"
    assert program in text
    unit = tmp_path / "chronohub.service"
    unit.write_text(text.replace(program, str(Path(sys.executable).parent / "chronohub")))
    assert deploy.SYSTEMD_ANALYZE is not None
    result = subprocess.run(
        [deploy.SYSTEMD_ANALYZE, "verify", str(unit)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr


@pytest.mark.skipif(deploy.LOGROTATE is None, reason="logrotate is not installed")
def test_logrotate_rotates_servers_logs_with_the_shipped_file(tmp_path: Path) -> None:
    """The shipped logrotate file (the data directory's path and its account changed) rotates
    a server's log in place: the file the server holds open is emptied, its lines kept."""
    text = (deploy.DEPLOY / "chronohub.logrotate").read_text()
    data, account = "/var/lib/chronohub", "su chronohub chronohub"
    assert data in text
    assert account in text
    me = pwd.getpwuid(os.geteuid())
    group = grp.getgrgid(os.getegid()).gr_name
    config = tmp_path / "chronohub.logrotate"
    config.write_text(
        text.replace(data, str(tmp_path / "data")).replace(account, f"su {me.pw_name} {group}")
    )
    (tmp_path / "data" / "logs" / "services").mkdir(parents=True)
    log = tmp_path / "data" / "logs" / "rita.log"
    log.write_text("a server's line\n")
    assert deploy.LOGROTATE is not None
    result = subprocess.run(
        [deploy.LOGROTATE, "--force", "--state", str(tmp_path / "state"), str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert log.read_text() == ""  # truncated in place (copytruncate), not replaced
    assert (tmp_path / "data" / "logs" / "rita.log.1").read_text() == "a server's line\n"


# --- the deployment ---------------------------------------------------------------------------


@dataclass
class Deployment:
    root: Path
    https: str  # https://127.0.0.1:PORT, nginx
    http: str  # http://127.0.0.1:PORT, nginx's port 80
    hub_api: str  # the hub's own address (not through nginx), for the test's set-up only
    db_url: str
    cafile: Path
    webroot: Path

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cafile))

    def session(self, **connector: Any) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.tls(), **connector))

    async def call(
        self, method: str, path: str, token: str = TOKEN, **kwargs: Any
    ) -> tuple[int, Any]:
        """``/hub/api<path>`` through nginx."""
        async with (
            self.session() as session,
            session.request(
                method,
                f"{self.https}/hub/api{path}",
                headers={"Authorization": f"token {token}"},
                **kwargs,
            ) as response,
        ):
            text = await response.text()
            return response.status, json.loads(text) if text[:1] in "{[" and text else text

    async def user(self, name: str) -> str:
        """Create ``name`` with the test password; a token of theirs."""
        status, reply = await self.call("POST", f"/users/{name}")
        assert status == 201, reply
        status, reply = await self.call(
            "PUT", f"/users/{name}/password", json={"password": PASSWORD}
        )
        assert status == 204, reply
        status, reply = await self.call("POST", f"/users/{name}/tokens", json={})
        assert status == 201, reply
        token: str = reply["token"]
        return token


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def deployment() -> AsyncIterator[Deployment]:
    if deploy.NGINX is None or deploy.OPENSSL is None:
        pytest.skip("Debian's nginx (and openssl) are not installed: `make test` installs them")
    # Not pytest's tmp_path: PostgreSQL's account must pass through it (mode 0711 here).
    root = Path(tempfile.mkdtemp(prefix="chronohub-deploy-"))
    root.chmod(0o711)
    try:
        async for db_url in deploy.debian_postgres(root):
            async for deployed in _serve(root, db_url):
                yield deployed
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def _serve(root: Path, db_url: str) -> AsyncIterator[Deployment]:
    """nginx and ``chronohub serve`` on ``db_url``, both on free loopback ports."""
    http, https, proxy_port, hub_port = (
        ports.free_port(),
        ports.free_port(),
        ports.free_port(),
        ports.free_port(),
    )
    public = f"https://127.0.0.1:{https}"
    certs, _ = deploy.self_signed(root / "certs")
    webroot = root / "webroot"
    (webroot / ".well-known" / "acme-challenge").mkdir(parents=True)
    site = deploy.render_site(
        root / "nginx", http=http, https=https, upstream=proxy_port, certs=certs.parent,
        webroot=webroot,
    )  # fmt: skip
    main = deploy.nginx_config(root / "nginx", site)

    config = root / "chronohub.toml"
    args = ["--allow-root"] if os.geteuid() == 0 else []
    config.write_text(
        f"""
spawner_cmd = {json.dumps([SINGLEUSER])}
spawner_args = {json.dumps(args)}
start_timeout = 90
slow_spawn_timeout = 1
single_user_mode = true
single_user_mode_all_users = true
"""
        + service_toml(TOKEN, ["admin:users", "admin:servers", "tokens", "read:events"])
    )
    # The shipped environment file's settings (trusted_proxies: loopback only), with this
    # test's database, addresses and paths.
    env = hub_process_env(db_url, config, root / "data") | deploy.shipped_environment(
        CHRONOHUB_DATABASE_URL=db_url,
        CHRONOHUB_PUBLIC_URL=f"{public}/",
        CHRONOHUB_DATA_DIR=str(root / "data"),
        CHRONOHUB_PORT=str(proxy_port),
        CHRONOHUB_HUB_PORT=str(hub_port),
        CHRONOHUB_CONFIG=str(config),
    )
    hub_log, nginx_log = root / "hub.log", root / "nginx.log"
    serve = [sys.executable, "-m", "hub.cli", "serve"]
    with (
        open(hub_log, "ab") as log,
        open(nginx_log, "ab") as nginx_out,
        deploy.stopping(
            subprocess.Popen(
                serve, env=env, cwd=root, stdout=log, stderr=log, start_new_session=True
            ),
            "chronohub",
        ) as hub,
        deploy.stopping(
            subprocess.Popen(
                deploy.nginx_command(main, "-g", "daemon off;"), stdout=nginx_out, stderr=nginx_out
            ),
            "nginx",
        ) as nginx,
    ):
        deployed = Deployment(
            root=root,
            https=public,
            http=f"http://127.0.0.1:{http}",
            hub_api=f"http://127.0.0.1:{hub_port}/hub/api",
            db_url=db_url,
            cafile=certs,
            webroot=webroot,
        )

        async def up() -> bool:
            assert hub.poll() is None, hub_log.read_text()
            assert nginx.poll() is None, nginx_log.read_text()
            with contextlib.suppress(aiohttp.ClientError):
                status, _ = await deployed.call("GET", "/")
                return bool(status == 200)
            return False

        await wait_for(up, timeout_s=90, every_s=0.2)
        yield deployed


# --- through nginx ----------------------------------------------------------------------------


async def test_port_80_redirects_to_https_but_serves_acme_challenges(
    deployment: Deployment,
) -> None:
    challenge = deployment.webroot / ".well-known" / "acme-challenge" / "token-123"
    challenge.write_text("token-123.thumbprint")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{deployment.http}/hub/login", allow_redirects=False) as reply:
            assert reply.status == 301
            assert reply.headers["Location"] == "https://127.0.0.1/hub/login"
        async with session.get(f"{deployment.http}/.well-known/acme-challenge/token-123") as reply:
            assert reply.status == 200
            assert await reply.text() == "token-123.thumbprint"
    async with deployment.session() as session, session.get(f"{deployment.https}/hub/login") as r:
        assert r.status == 200
        assert r.headers["Strict-Transport-Security"] == "max-age=63072000"


async def _handshake(deployment: Deployment, version: ssl.TLSVersion) -> str:
    """The TLS version nginx agrees to when the client offers only ``version``."""
    context = deployment.tls()
    context.minimum_version = context.maximum_version = version
    host, port = deployment.https.removeprefix("https://").split(":")
    _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port), ssl=context), 10)
    try:
        agreed = writer.get_extra_info("ssl_object").version()
        assert isinstance(agreed, str)
        return agreed
    finally:
        writer.close()


async def test_tls_1_2_and_1_3(deployment: Deployment) -> None:
    """Both modern versions are served. (That older ones are refused is not shown here: this
    machine's OpenSSL refuses them on both sides whatever the site says.)"""
    assert await _handshake(deployment, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    assert await _handshake(deployment, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"


async def test_login_form_and_the_address_the_hub_records(deployment: Deployment) -> None:
    """The browser connects from 127.0.0.2 and claims to be 203.0.113.9: nginx replaces the
    claim with the address it saw, which the hub records (127.0.0.1, nginx and the built-in
    proxy, being the only trusted proxies)."""
    await deployment.user("lena")
    browser = Browser(
        deployment.https,
        headers={"X-Forwarded-For": "203.0.113.9"},
        connector=aiohttp.TCPConnector(ssl=deployment.tls(), local_addr=(CLIENT_ADDRESS, 0)),
    )
    try:
        done = await browser.login("lena")
        assert done.status == 302, done.text
        assert done.location == "/hub/home"
        [cookie] = [m for m in browser.session.cookie_jar if m.key == login_cookies.COOKIE_NAME]
        assert cookie["secure"], "public_url is https: the login cookie is Secure"
        home = await browser.get("/hub/home")
        assert home.status == 200
        assert "lena" in home.text
    finally:
        await browser.close()
    conn = await asyncpg.connect(deployment.db_url)
    try:
        rows = await conn.fetch(
            "SELECT metadata FROM events WHERE event_type = 'user.logged_in'"
            " AND data->>'name' = 'lena'"
        )
    finally:
        await conn.close()
    assert [json.loads(r["metadata"])["client_address"] for r in rows] == [CLIENT_ADDRESS]


async def test_a_real_single_user_server_spawned_and_reached(deployment: Deployment) -> None:
    rita = await deployment.user("rita")
    status, reply = await deployment.call("POST", "/users/rita/server", token=rita)
    assert status in (201, 202), reply

    async def ready() -> bool:
        _, user = await deployment.call("GET", "/users/rita")
        server = user["servers"].get("")
        return bool(server and server["ready"])

    await wait_for(ready, timeout_s=90, every_s=0.5)
    headers = {"Authorization": f"token {rita}"}
    async with deployment.session() as session:
        async with session.get(f"{deployment.https}/user/rita/api/status", headers=headers) as r:
            assert r.status == 200, await r.text()
            assert "started" in await r.json()
        # A websocket under /user/: jupyter_server's event stream, upgraded through nginx.
        async with session.ws_connect(
            f"{deployment.https.replace('https', 'wss')}/user/rita/api/events/subscribe",
            headers=headers,
        ) as ws:
            assert not ws.closed
    status, reply = await deployment.call("DELETE", "/users/rita/server", token=rita)
    assert status in (202, 204), reply


async def test_a_collaboration_room_over_wss(deployment: Deployment) -> None:
    noor = await deployment.user("noor")
    base = deployment.https.replace("https://", "wss://")
    async with (
        collab_client.connect(base, "deploy-notes", token=noor, ssl_context=deployment.tls()) as a,
        collab_client.connect(
            base, "deploy-notes", token=noor, ssl_context=deployment.tls(), in_query=True
        ) as b,
    ):
        await asyncio.wait_for(a.synced.wait(), 20)
        await asyncio.wait_for(b.synced.wait(), 20)
        a.doc.get("text", type=pycrdt.Text).insert(0, "behind nginx")
        await a.flushed()
        text = b.doc.get("text", type=pycrdt.Text)
        await wait_for(lambda: str(text) == "behind nginx", timeout_s=20)


async def test_git_clone_and_a_20_mb_push(deployment: Deployment) -> None:
    omar = await deployment.user("omar")
    status, project = await deployment.call("POST", "/projects", token=omar, json={"name": "big"})
    assert status == 201, project
    url = project["clone_url"]
    assert url.startswith(f"{deployment.https}/hub/git/"), url  # public_url's
    git = Git(deployment.root / "git")
    git.env["GIT_SSL_CAINFO"] = str(deployment.cafile)
    work = deployment.root / "git" / "work"
    # 20 MB that git cannot compress: the pack crosses nginx at about that size, streamed.
    await git.new_repo(work, {"data.bin": os.urandom(20 * 1024 * 1024)})
    started = time.monotonic()
    await git.ok("push", "-q", with_token(url, omar, "omar"), "main", cwd=work, timeout=120)
    assert time.monotonic() - started < 120
    clone = deployment.root / "git" / "clone"
    await git.ok("clone", "-q", with_token(url, omar, "omar"), str(clone), timeout=120)
    assert (clone / "data.bin").read_bytes() == (work / "data.bin").read_bytes()


async def test_the_audit_stream_is_not_buffered(deployment: Deployment) -> None:
    """An event appended while the stream is open arrives within a second, through nginx."""
    async with deployment.session() as session:
        stream = await session.get(
            f"{deployment.https}/hub/api/events/stream?type=user.created",
            headers={"Authorization": f"token {TOKEN}"},
            timeout=aiohttp.ClientTimeout(total=60),
        )
        try:
            assert stream.status == 200
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            # Created on the hub's own address: only the stream goes through nginx.
            async with session.post(
                f"{deployment.hub_api}/users/sse-probe",
                headers={"Authorization": f"token {TOKEN}"},
            ) as created:
                assert created.status == 201
            appended = time.monotonic()

            async def arrives() -> None:
                async for line in stream.content:
                    if line.startswith(b"data:") and b'"sse-probe"' in line:
                        return

            await asyncio.wait_for(arrives(), 10)
            assert time.monotonic() - appended < 1.0
        finally:
            stream.close()
