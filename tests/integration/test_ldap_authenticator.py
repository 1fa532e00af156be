"""``ldapauthenticator.LDAPAuthenticator``, unchanged, through the adapter, against a real
OpenLDAP: Debian's ``slapd``, started by the test on 127.0.0.1 with a throwaway directory
(an mdb database loaded with ``slapadd``), stopped at the end."""

from __future__ import annotations

import asyncio
import gc
import json
import shutil
import socket
import subprocess
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from events import store
from tests import ports
from tests.helpers import wait_for
from tests.integration.browser import Browser, running_hub

pytestmark = [
    pytest.mark.integration,
    pytest.mark.interop,
    # ldapauthenticator 2.0 leaves its ldap3 connection open after each bind (it never
    # unbinds); the garbage collector closes the socket, with a warning that is not ours
    pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SUFFIX = "dc=example,dc=org"
PEOPLE = {"ada": "ada's LDAP password", "grace": "grace's LDAP password"}

SLAPD_CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {dir}/slapd.pid
database mdb
suffix "{suffix}"
rootdn "cn=admin,{suffix}"
rootpw "not-used-by-the-test"
directory {dir}/db
"""


def _ldif() -> str:
    entries = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example",
        f"dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people",
    ]
    for name, password in PEOPLE.items():
        entries.append(
            f"dn: uid={name},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {name}\n"
            f"cn: {name}\nsn: {name}\nuserPassword: {password}"
        )
    return "\n\n".join(entries) + "\n"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
async def slapd(tmp_path: Path) -> AsyncIterator[int]:
    """A slapd on a free port of 127.0.0.1 serving ``PEOPLE``; yields the port."""
    if shutil.which(SLAPD) is None:
        pytest.skip("Debian's slapd is not installed (make installs it as root)")
    (tmp_path / "db").mkdir()
    conf = tmp_path / "slapd.conf"
    conf.write_text(SLAPD_CONF.format(dir=tmp_path, suffix=SUFFIX))
    subprocess.run(
        [SLAPADD, "-f", str(conf)], input=_ldif(), text=True, check=True, capture_output=True
    )
    port = ports.free_port()
    # -d 0: stay in the foreground (ours to stop), logging nothing
    errors = tmp_path / "slapd.err"
    with errors.open("w") as stderr:
        process = subprocess.Popen(
            [SLAPD, "-f", str(conf), "-h", f"ldap://127.0.0.1:{port}/", "-d", "0"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        await wait_for(lambda: process.poll() is not None or _listening(port), timeout_s=20)
        assert process.poll() is None, errors.read_text()
        yield port
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 20)


async def log_in(browser: Browser, name: str, password: str) -> Any:
    await browser.get("/hub/login")
    return await browser.post(
        "/hub/login", data={"_xsrf": browser.xsrf(), "username": name, "password": password}
    )


async def test_ldap_logs_in_directory_users_with_their_passwords(
    event_store: store.EventStore, pool: asyncpg.Pool[Any], slapd: int
) -> None:
    config = {
        "LDAPAuthenticator": {
            "server_address": "127.0.0.1",
            "server_port": slapd,
            "tls_strategy": "insecure",  # a loopback test server without TLS
            "bind_dn_template": [f"uid={{username}},ou=people,{SUFFIX}"],
            "allowed_users": ["ada"],
            "admin_users": ["ada"],
        }
    }
    async with running_hub(
        event_store,
        authenticator_class="ldapauthenticator.LDAPAuthenticator",
        authenticator_config=config,
    ) as (_, url):
        browser = Browser(url)
        try:
            done = await log_in(browser, "ada", PEOPLE["ada"])
            assert done.status == 302, done.text
            me = await (await browser.get("/hub/api/user")).response.json()
            assert (me["name"], me["admin"]) == ("ada", True)
        finally:
            await browser.close()
        browser = Browser(url)
        try:
            wrong = await log_in(browser, "ada", "not ada's password")
            assert wrong.status == 403
            assert "Invalid username or password" in wrong.text
            not_allowed = await log_in(browser, "grace", PEOPLE["grace"])
            assert not_allowed.status == 403
            assert (await browser.get("/hub/api/user")).status == 403
        finally:
            await browser.close()
    rows = await pool.fetch(
        "SELECT event_type, data FROM events WHERE event_type IN"
        " ('user.created', 'user.logged_in', 'user.login_failed') ORDER BY global_position"
    )
    found = [(r["event_type"], json.loads(r["data"])) for r in rows]
    assert [
        (kind, e.get("name"), e.get("authenticator"), e.get("reason"))
        for kind, e in found
        if e.get("name") in (None, "ada", "grace")
    ] == [
        ("user.created", "ada", None, None),
        ("user.logged_in", "ada", "jupyterhub", None),
        ("user.login_failed", "ada", "jupyterhub", "bad_password"),
        ("user.login_failed", None, "jupyterhub", "unknown_user"),
    ]
    log_text = await pool.fetchval("SELECT string_agg(data::text, ' ') FROM events")
    assert all(password not in log_text for password in PEOPLE.values())
    with warnings.catch_warnings():  # ldapauthenticator's left-open connections, collected here
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
