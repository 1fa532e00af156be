"""The parts of the reference deployment in deploy/nginx/ that its test puts together: the
shipped files rendered for loopback (only addresses and paths changed), a self-signed
certificate, a main nginx.conf around the site, and a throwaway cluster of Debian's
PostgreSQL with chronohub's role and database made by the shipped postgres-setup.sql."""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests import ports
from tests.helpers import wait_for

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "nginx"
NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
OPENSSL = shutil.which("openssl")
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
LOGROTATE = shutil.which("logrotate") or shutil.which("logrotate", path="/usr/sbin:/sbin")
PG_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
needs_nginx = pytest.mark.skipif(
    NGINX is None or OPENSSL is None,
    reason="Debian's nginx (and openssl) are not installed: `make test` installs them as root",
)


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own authority) and its key, named as certbot does."""
    directory.mkdir(parents=True)
    cert, key = directory / "fullchain.pem", directory / "privkey.pem"
    assert OPENSSL is not None
    subprocess.run(
        [OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


def render_site(
    root: Path, *, http: int, https: int, upstream: int, certs: Path, webroot: Path
) -> str:
    """The shipped site with only addresses and paths changed: every directive is kept. Each
    replaced text must be there, so a changed template fails here rather than going untested."""
    ipv6 = ipv6_loopback()
    replacements = [
        ("listen 80;", f"listen 127.0.0.1:{http};"),
        ("listen [::]:80;", f"listen [::1]:{http};" if ipv6 else ""),
        ("listen 443 ssl http2;", f"listen 127.0.0.1:{https} ssl http2;"),
        ("listen [::]:443 ssl http2;", f"listen [::1]:{https} ssl http2;" if ipv6 else ""),
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream};"),
        ("/etc/letsencrypt/live/hub.example.org/", f"{certs}/"),
        ("/var/www/letsencrypt", str(webroot)),
        ("/var/log/nginx/", f"{root}/logs/"),
    ]
    text = (DEPLOY / "chronohub.nginx.conf").read_text()
    for old, new in replacements:
        assert old in text, f"the shipped site no longer has {old!r}: update this test"
        text = text.replace(old, new)
    return text


def nginx_config(root: Path, site: str) -> Path:
    """A main nginx.conf around the rendered site (Debian's /etc/nginx/nginx.conf plays this
    part on a real machine), every path inside ``root``."""
    for sub in ("logs", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "chronohub.conf").write_text(site)
    temp = "\n".join(
        f"    {kind}_temp_path {root}/tmp/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # Run as root (the CI machine), workers would be nobody, who cannot enter the test's
    # private temporary directory: they stay root here.
    user = "user root;\n" if os.geteuid() == 0 else ""
    main = root / "nginx.conf"
    main.write_text(f"""{user}worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/logs/error.log;
events {{ worker_connections 512; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {root}/logs/access.log;
{temp}
    include {root}/chronohub.conf;
}}
""")
    return main


def nginx_command(main: Path, *args: str) -> list[str]:
    assert NGINX is not None
    return [NGINX, "-p", str(main.parent), "-e", str(main.parent / "logs" / "error.log"),
            "-c", str(main), *args]  # fmt: skip


def shipped_environment(**values: str) -> dict[str, str]:
    """The variables of the shipped chronohub.env.example, read as systemd's EnvironmentFile=
    reads this simple file (quotes around a value removed), with ``values`` replacing some;
    each replaced one must be there."""
    env = {}
    for line in (DEPLOY / "chronohub.env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value[1:-1] if value[:1] in "'\"" and value[-1:] == value[:1] else value
    assert set(values) <= set(env), set(values) - set(env)
    return env | values


def as_postgres() -> dict[str, Any]:
    """Run PostgreSQL's programs as its own account when root (it refuses to run as root)."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": "postgres"}


@contextlib.contextmanager
def stopping(process: subprocess.Popen[bytes], name: str) -> Iterator[subprocess.Popen[bytes]]:
    """``process``, stopped with SIGTERM (SIGKILL after 20 s) when the block ends."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        assert name  # named for the reader of a traceback


@dataclass(frozen=True)
class Cluster:
    """A running throwaway PostgreSQL cluster: its programs, data, socket directory and port."""

    bin_dir: Path
    data: Path
    socket_dir: Path
    port: int


async def debian_postgres(root: Path) -> AsyncIterator[str]:
    """A throwaway cluster of Debian's PostgreSQL with chronohub's role and database made by
    the shipped postgres-setup.sql; yields the hub's database URL (TCP, password)."""
    async for cluster in debian_cluster(root):
        password = secrets.token_urlsafe(24)
        setup = subprocess.run(
            [str(cluster.bin_dir / "psql"), "-h", str(cluster.socket_dir), "-p", str(cluster.port),
             "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-v", f"password={password}",
             "-f", str(DEPLOY / "postgres-setup.sql")],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert setup.returncode == 0, setup.stderr
        yield f"postgresql://chronohub:{password}@127.0.0.1:{cluster.port}/chronohub"


async def debian_cluster(root: Path) -> AsyncIterator[Cluster]:
    """A throwaway cluster of Debian's PostgreSQL in ``root``/pg, on a free port, loopback only,
    password logins over TCP (as Debian's own cluster), its socket in ``root``/pg."""
    if not PG_BINS:
        pytest.skip("Debian's postgresql is not installed: `make test` installs it as root")
    bin_dir = PG_BINS[-1].parent
    pg = root / "pg"
    pg.mkdir()
    if os.geteuid() == 0:
        postgres = pwd.getpwnam("postgres")
        os.chown(pg, postgres.pw_uid, postgres.pw_gid)
    subprocess.run(
        [str(bin_dir / "initdb"), "-D", str(pg / "data"), "-U", "postgres", "-E", "UTF8",
         "--locale=C.UTF-8", "--auth-local=trust", "--auth-host=scram-sha-256", "-N"],
        check=True, capture_output=True, timeout=120, **as_postgres(),
    )  # fmt: skip
    port = ports.free_port()
    command = [str(bin_dir / "postgres"), "-D", str(pg / "data"), "-p", str(port),
               "-k", str(pg), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]  # fmt: skip
    with (
        open(pg / "postgres.log", "ab") as log,
        stopping(
            subprocess.Popen(command, stdout=log, stderr=log, **as_postgres()), "postgres"
        ) as server,
    ):

        async def answers() -> bool:
            assert server.poll() is None, (pg / "postgres.log").read_text()
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                conn = await asyncpg.connect(host=str(pg), port=port, user="postgres")
                await conn.close()
                return True
            return False

        await wait_for(answers, timeout_s=60, every_s=0.1)
        yield Cluster(bin_dir=bin_dir, data=pg / "data", socket_dir=pg, port=port)
