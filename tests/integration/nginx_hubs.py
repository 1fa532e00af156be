"""Several ``chronohub serve`` processes on one database and one data directory, with Debian's
nginx in front of them as one upstream, round robin (issue 20): the deployment of
docs/deploy.md's "Several hub processes", on loopback.

nginx runs one worker, so its round robin is strict: consecutive requests go to the next
process in turn. The test's site adds the header ``X-Upstream`` (nginx's ``$upstream_addr``)
to every answer, so a test knows which process answered each step and can prove that state
made through one process is honoured by another.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests import ports
from tests.helpers import service_toml, wait_for
from tests.integration import deploy_fixtures as deploy
from tests.integration.api_fixtures import CONFIG
from tests.integration.browser import PASSWORD
from tests.integration.oauth_fixtures import WHOAMI_TOKEN
from tests.integration.serve_process import Served, serving
from tests.integration.spawn_fixtures import fake

OPERATOR = "operator-secret-0123456789abcdef0123"
UPSTREAM = "X-Upstream"

# Every process gets the same settings: one cookie secret, the same services and roles.
TOML = (
    f'cookie_secret = "{CONFIG["cookie_secret"]}"\n'
    "login_lockout_failures = 3\n"
    "login_address_max_failures = 5\n"
    f"spawner_cmd = {json.dumps(fake('slow'))}\n"
    "start_timeout = 20\n"
    "slow_spawn_timeout = 0\n"
    "term_timeout = 2\n"
    "single_user_mode = true\n"
    "single_user_mode_all_users = true\n"
    + service_toml(OPERATOR, ["admin:users", "admin:servers", "tokens", "read:hub", "proxy"])
    + f"""
[[services]]
name = "whoami"
api_token = "{WHOAMI_TOKEN}"
url = "http://127.0.0.1:10101"
oauth_client_allowed_scopes = ["read:users:name!user"]

[[roles]]
name = "whoami-users"
scopes = ["access:services!service=whoami"]
users = ["alice"]

[[roles]]
name = "collaborators"
scopes = ["write:collab", "read:collab", "read:users:name"]
users = ["alice", "bob"]
"""
)

# The reference site's proxy settings (deploy/nginx/chronohub.nginx.conf), over plain http on
# loopback, its one upstream holding every process.
SITE = """
map $http_upgrade $chronohub_connection {{
    default upgrade;
    ''      '';
}}

upstream chronohub {{
{servers}
    keepalive 32;
}}

server {{
    listen 127.0.0.1:{port};
    add_header X-Upstream $upstream_addr always;
    client_max_body_size 200m;
    proxy_http_version 1.1;
    proxy_set_header Host $http_host;
    proxy_set_header X-Real-IP $remote_addr;
    proxy_set_header X-Forwarded-For $remote_addr;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header Upgrade $http_upgrade;
    proxy_set_header Connection $chronohub_connection;
    proxy_buffering off;
    proxy_read_timeout 300s;
    location / {{
        proxy_pass http://chronohub;
    }}
}}
"""


@dataclass
class Answer:
    status: int
    body: Any
    upstream: str  # host:port of the process that answered (nginx's $upstream_addr)


@dataclass
class Hubs:
    """The processes, nginx's address in front of them, and a client."""

    base: str  # http://127.0.0.1:PORT (nginx)
    processes: list[Served]
    session: aiohttp.ClientSession
    root: Path
    seen: list[str] = field(default_factory=list)  # upstreams, in the order they answered

    def url(self, path: str) -> str:
        return self.base + path

    def upstream_of(self, served: Served) -> str:
        """nginx's name for a process (its public host:port)."""
        return served.url.removeprefix("http://").rstrip("/")

    async def call(
        self, method: str, path: str, token: str | None = OPERATOR, **kwargs: Any
    ) -> Answer:
        """``/hub/api<path>`` through nginx."""
        headers = {"Authorization": f"token {token}"} if token else {}
        async with self.session.request(
            method, self.url("/hub/api" + path), headers=headers, **kwargs
        ) as response:
            text = await response.text()
            body = json.loads(text) if text and text[0] in "{[" else text
            upstream = response.headers.get(UPSTREAM, "")
            self.seen.append(upstream)
            return Answer(response.status, body, upstream)


StartHubs = Callable[..., Awaitable[Hubs]]


@pytest.fixture
async def nginx_hubs(db_url: str, tmp_path: Path) -> AsyncIterator[StartHubs]:
    """``start(n, extra_toml="")``: ``n`` serve processes behind nginx; alice and bob exist
    with the test password."""
    if deploy.NGINX is None:
        pytest.skip("Debian's nginx is not installed: `make test` installs it as root")
    async with contextlib.AsyncExitStack() as stack:

        async def start(n: int, extra_toml: str = "") -> Hubs:
            config = tmp_path / "chronohub.toml"
            config.write_text(extra_toml + TOML)  # top-level keys before the tables
            data = tmp_path / "data"  # one data directory for all, as on a shared volume
            # Started together (each takes seconds to start), each stopped by the stack.
            starting = [serving(db_url, tmp_path, config, data, name=f"hub{i}") for i in range(n)]
            entered = await asyncio.gather(
                *(cm.__aenter__() for cm in starting), return_exceptions=True
            )
            for cm, result in zip(starting, entered, strict=True):
                if not isinstance(result, BaseException):
                    stack.push_async_exit(cm)
            for result in entered:
                if isinstance(result, BaseException):
                    raise result
            processes = [p for p in entered if isinstance(p, Served)]
            port = ports.free_port()
            servers = "\n".join(
                f"    server {p.url.removeprefix('http://').rstrip('/')};" for p in processes
            )
            main = deploy.nginx_config(tmp_path / "nginx", SITE.format(servers=servers, port=port))
            out = open(tmp_path / "nginx.log", "ab")  # noqa: SIM115 - closed by the stack
            stack.callback(out.close)
            stack.enter_context(
                deploy.stopping(
                    subprocess.Popen(
                        deploy.nginx_command(main, "-g", "daemon off;"), stdout=out, stderr=out
                    ),
                    "nginx",
                )
            )
            session = await stack.enter_async_context(aiohttp.ClientSession())
            hubs = Hubs(f"http://127.0.0.1:{port}", processes, session, tmp_path)

            async def up() -> bool:
                with contextlib.suppress(aiohttp.ClientError):
                    return (await hubs.call("GET", "/")).status == 200
                return False

            await wait_for(up, timeout_s=30, every_s=0.1)
            for name in ("alice", "bob"):
                answer = await hubs.call("POST", f"/users/{name}")
                assert answer.status in (201, 409), answer  # roles made some
                answer = await hubs.call(
                    "PUT", f"/users/{name}/password", json={"password": PASSWORD}
                )
                assert answer.status == 204, answer
            return hubs

        yield start
