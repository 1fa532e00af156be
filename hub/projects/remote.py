"""Fetching a repository from the internet, with the hub's limits: blocking, run in ``Workers``.

``import_url`` is a URL a user typed that the hub's own network will fetch: an invitation to
make the hub read its cloud's metadata service, an admin interface on loopback or a server
on the private network (SSRF). So:

- Only ``http``, ``https`` and ``git`` URLs, without credentials, query or fragment (``file``,
  ``ssh``, local paths and everything else are refused before anything happens).
- Every connection resolves its host here and checks *every* address against the policy
  (loopback, private, link-local, multicast, reserved and other non-global addresses are
  refused unless configured), then connects to the address it checked: there is no second
  lookup that DNS rebinding could answer differently. The check sits where sockets are made
  (``_GuardedHTTPConnection._new_conn``, ``_GuardedTCPGitClient._connect``), so each redirect,
  which opens a new connection, is checked as well. No proxy from the environment is used.
- Every byte read from the remote counts against ``max_bytes``, and the whole fetch against a
  deadline, at which ``Budget.expire`` shuts the open sockets down so a stalled server cannot
  keep a worker thread.

Why dulwich's client and not ``git`` as a subprocess: git resolves names itself (libcurl for
HTTP, getaddrinfo for git://), so pinning the checked address would take
``http.curloptResolve`` for HTTP, a proxy command for git://, and redirects turned off; and
git has no cap on what a fetch downloads. With dulwich the hub makes the sockets itself
(urllib3 connection classes of ours for HTTP(S), our own connect for git://) and reads every
byte through a counter.
"""

from __future__ import annotations

import contextlib
import ipaddress
import select
import socket
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import SplitResult, urlsplit

import urllib3
from dulwich.client import GitClient, TCPGitClient, Urllib3HttpGitClient
from dulwich.errors import (
    ApplyDeltaError,
    ChecksumMismatch,
    GitProtocolError,
    HangupException,
    NotGitRepository,
    ObjectFormatException,
)
from dulwich.object_store import PackInputTooLarge
from dulwich.objects import Commit, ObjectID, Tag
from dulwich.pack import UnresolvedDeltas
from dulwich.protocol import Protocol
from dulwich.refs import Ref
from dulwich.repo import Repo
from urllib3 import connection, connectionpool

from hub.projects import packs

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMES = ("http", "https", "git")
DEFAULT_PORTS = {"http": 80, "https": 443, "git": 9418}
IMPORTED_PREFIXES = ("refs/heads/", "refs/tags/")
MAX_REDIRECTS = 5
# What a broken pack raises while dulwich indexes it.
UNPACK_ERRORS = (
    OSError,
    ChecksumMismatch,
    ApplyDeltaError,
    AssertionError,
    ObjectFormatException,
    GitProtocolError,
    ValueError,
    EOFError,
    zlib.error,
    UnresolvedDeltas,  # a thin pack against objects the hub lacks
)


class RemoteError(Exception):
    """A fetch the hub refused or could not do; the message is for the user."""


class BadUrl(RemoteError):
    """The URL is not one the hub fetches from (scheme, credentials, shape)."""


class AddressRefused(RemoteError):
    """The host resolves to an address the hub does not connect to."""


class TooLarge(RemoteError):
    """The remote sent more than the hub's limit."""


class TimedOut(RemoteError):
    """The fetch took longer than the hub's limit."""


class FetchFailed(RemoteError):
    """The remote could not be reached, or did not answer as a git server."""


# --- the URL ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A checked URL: what to connect to and the repository path on it."""

    url: str
    scheme: str
    host: str
    port: int
    path: str


def parse_url(raw: str) -> Source:
    """``raw`` as a ``Source``, or ``BadUrl`` saying what is wrong with it."""
    if any(ord(c) < 0x21 or ord(c) == 0x7F or c == "\\" for c in raw):
        raise BadUrl("the URL has spaces, control characters or backslashes")
    try:
        parts: SplitResult = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise BadUrl(f"not a URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        shown = f"{scheme}://" if scheme else "a local path"
        raise BadUrl(f"{shown} is not fetched by the hub; use an http, https or git URL")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        # A token in the URL would be stored in the event log for everyone with read:events.
        raise BadUrl("credentials in the URL are not accepted; only public repositories import")
    if parts.query or parts.fragment or raw.endswith(("?", "#")):
        raise BadUrl("the URL has a query or fragment; git URLs have neither")
    host = parts.hostname
    if not host:
        raise BadUrl("the URL has no host")
    if port == 0:
        raise BadUrl("port 0 is not a port")
    path = parts.path or "/"
    return Source(url=raw, scheme=scheme, host=host, port=port or DEFAULT_PORTS[scheme], path=path)


# --- the addresses ------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """What the hub may fetch from, and how much, for how long."""

    allow_private: bool
    allowed_networks: tuple[IPNetwork, ...]
    max_bytes: int
    timeout_s: float


def _kind(address: IPAddress) -> str | None:
    """What makes ``address`` one the hub does not fetch from (None: a global address)."""
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_unspecified:
        return "unspecified"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "non-global"
    return None


def refusal(address: IPAddress, policy: Policy) -> str | None:
    """Why the hub does not connect to ``address`` (None: it may), after the policy."""
    # An IPv6 address that carries an IPv4 one reaches that one: judge it by both.
    candidates: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if address.teredo is not None:
            embedded = address.teredo[1]
        if embedded is not None:
            candidates.insert(0, embedded)  # named by what it reaches
    for candidate in candidates:
        kind = _kind(candidate)
        if kind is None or policy.allow_private:
            continue
        if any(candidate in network for network in policy.allowed_networks):
            continue
        return kind
    return None


def resolve(host: str, port: int, policy: Policy) -> tuple[Any, ...]:
    """The first of ``host``'s addresses as a ``getaddrinfo`` tuple, once *all* of them pass
    the policy (a name with one private address among public ones is refused whole)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchFailed(f"cannot resolve {host}: {exc}") from exc
    if not infos:
        raise FetchFailed(f"{host} has no address")
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if (kind := refusal(address, policy)) is not None:
            literal = host.strip("[]") == str(address)
            shown = f"{host}" if literal else f"{host} resolves to a {kind} address, which"
            if literal:
                raise AddressRefused(
                    f"{shown} is a {kind} address; the hub does not fetch from loopback, private,"
                    " link-local, multicast or reserved addresses unless configured to"
                )
            raise AddressRefused(
                f"{shown} the hub does not fetch from (loopback, private, link-local,"
                " multicast and reserved addresses are refused unless configured)"
            )
    return tuple(infos[0])


# --- the budget: bytes and time -----------------------------------------------------------


@dataclass
class Budget:
    """How many bytes and how much time a fetch has left, shared by its connections."""

    max_bytes: int
    timeout_s: float
    deadline: float
    received: int = 0
    expired: bool = False
    _sockets: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def of(cls, policy: Policy) -> Budget:
        """A budget starting now."""
        return cls(
            max_bytes=policy.max_bytes,
            timeout_s=policy.timeout_s,
            deadline=time.monotonic() + policy.timeout_s,
        )

    def too_large(self) -> TooLarge:
        """The error of a fetch over the size limit."""
        return TooLarge(f"the repository is larger than the hub's limit of {self.max_bytes} bytes")

    def timed_out(self) -> TimedOut:
        """The error of a fetch past its deadline."""
        return TimedOut(f"the remote took longer than the hub's limit of {self.timeout_s:g} s")

    def remaining(self) -> float:
        """Seconds left; ``TimedOut`` if none."""
        left = self.deadline - time.monotonic()
        if self.expired or left <= 0:
            raise self.timed_out()
        return left

    def count(self, data: bytes) -> bytes:
        """``data`` just read, counted; ``TooLarge``/``TimedOut`` when over either limit."""
        self.received += len(data)
        if self.received > self.max_bytes:
            raise self.too_large()
        self.remaining()
        return data

    def watch(self, sock: socket.socket) -> None:
        """Shut ``sock`` down when the budget expires (a duplicate is kept: TLS takes over the
        original, and shutting down either ends the connection)."""
        with self._lock:
            if self.expired:
                raise self.timed_out()
            self._sockets.append(sock.dup())

    def expire(self) -> None:
        """Out of time: end every connection, waking a thread blocked reading it."""
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Let go of the duplicates."""
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()


def _connect(host: str, port: int, policy: Policy, budget: Budget) -> socket.socket:
    """A socket connected to ``host``'s checked address (never a second lookup)."""
    family, kind, proto, _, sockaddr = resolve(host, port, policy)
    sock = socket.socket(family, kind, proto)
    try:
        sock.settimeout(min(policy.timeout_s, budget.remaining()))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        budget.watch(sock)
        sock.connect(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


# --- HTTP(S): urllib3 connections that connect only to checked addresses ------------------


def _pool_manager(policy: Policy, budget: Budget) -> urllib3.PoolManager:
    """A pool manager whose every connection (redirects too) goes through ``_connect``."""

    class _GuardedHTTPConnection(connection.HTTPConnection):
        def _new_conn(self) -> socket.socket:
            return _connect(self._dns_host, self.port, policy, budget)

    class _GuardedHTTPSConnection(connection.HTTPSConnection):
        # TLS is set up on this socket with the URL's host name: SNI and the certificate
        # check are for the name, while the socket goes to the address that was checked.
        def _new_conn(self) -> socket.socket:
            return _connect(self._dns_host, self.port, policy, budget)

    class _HTTPPool(connectionpool.HTTPConnectionPool):
        ConnectionCls = _GuardedHTTPConnection

    class _HTTPSPool(connectionpool.HTTPSConnectionPool):
        ConnectionCls = _GuardedHTTPSConnection

    manager = urllib3.PoolManager(
        num_pools=4,
        headers={"User-Agent": "chronohub-import", "Accept-Encoding": "identity"},
        timeout=urllib3.Timeout(connect=policy.timeout_s, read=policy.timeout_s),
        # connection errors are not retried (the deadline is the budget); redirects are, each
        # to a connection that is checked again
        retries=urllib3.Retry(total=MAX_REDIRECTS, connect=0, read=0, status=0, other=0),
    )
    manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
    return manager


class _GuardedHttpClient(Urllib3HttpGitClient):
    """dulwich's HTTP client, every byte of every response counted against the budget."""

    def __init__(self, base_url: str, *, budget: Budget, pool_manager: urllib3.PoolManager):
        super().__init__(base_url, pool_manager=pool_manager)
        self._budget = budget

    def _http_request(self, *args: Any, **kwargs: Any) -> Any:
        response, read = super()._http_request(*args, **kwargs)
        budget = self._budget

        def counted(size: int) -> bytes:
            return budget.count(read(size))

        return response, counted


# --- git://: our own connect, to the checked address --------------------------------------


class _GuardedTCPGitClient(TCPGitClient):
    """dulwich's git:// client connecting to the checked address, reads counted."""

    def __init__(self, host: str, port: int, *, policy: Policy, budget: Budget) -> None:
        super().__init__(host, port=port)
        self._policy = policy
        self._budget = budget

    def _connect(
        self, cmd: bytes, path: str | bytes, protocol_version: int | None = None
    ) -> tuple[Protocol, Callable[[], bool], IO[bytes] | None]:
        raw_path = path if isinstance(path, bytes) else path.encode("utf-8")
        sock = _connect(self._host, self._port, self._policy, self._budget)
        rfile = sock.makefile("rb", -1)
        wfile = sock.makefile("wb", 0)
        budget = self._budget

        def read(size: int = -1) -> bytes:
            return budget.count(rfile.read(size))

        def close() -> None:
            rfile.close()
            wfile.close()
            sock.close()

        def can_read() -> bool:
            return bool(select.select([sock], [], [], 0)[0])

        proto = Protocol(read, wfile.write, close)
        # protocol v0, the request line git-daemon expects: "git-upload-pack <path>\0host=<h>\0"
        self.protocol_version = 0
        proto.send_cmd(b"git-" + cmd, raw_path, b"host=" + self._host.encode("idna"))
        return proto, can_read, None


def client_for(source: Source, policy: Policy, budget: Budget) -> tuple[GitClient, str]:
    """A dulwich client for ``source`` that keeps to ``policy`` and ``budget``; and the path."""
    if source.scheme == "git":
        return _GuardedTCPGitClient(
            source.host, source.port, policy=policy, budget=budget
        ), source.path
    base = source.url
    client = _GuardedHttpClient(base, budget=budget, pool_manager=_pool_manager(policy, budget))
    return client, ""


# --- the fetch ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Fetched:
    """What the remote has: its branches and tags (hex shas), and its HEAD branch if it said."""

    refs: dict[str, str]
    head: str | None


def wanted_refs(remote: Mapping[Ref, ObjectID | None]) -> dict[str, str]:
    """The remote's branches and tags, peeled entries (``^{}``) left out."""
    refs: dict[str, str] = {}
    for name, sha in remote.items():
        text = name.decode("utf-8", "replace")
        if sha is None or not text.startswith(IMPORTED_PREFIXES) or text.endswith("^{}"):
            continue
        refs[text] = sha.decode("ascii")
    return refs


def _commits(repo: Repo, shas: Iterable[str]) -> list[ObjectID]:
    """The commits ``shas`` are or tag (peeled), those in the repository: what it has."""
    found: set[ObjectID] = set()
    for sha in shas:
        try:
            obj = repo.object_store[ObjectID(sha.encode())]
            while isinstance(obj, Tag):
                obj = repo.object_store[obj.object[1]]
        except KeyError:
            continue
        if isinstance(obj, Commit):
            found.add(obj.id)
    return sorted(found)


def fetch(
    source: Source, repo: Repo, haves: Iterable[str], policy: Policy, budget: Budget
) -> Fetched:
    """Fetch ``source``'s branches and tags into ``repo``'s object store (refs untouched).

    ``haves``: commits the repository has (the project's refs), so only what is new comes.
    Raises a ``RemoteError``.
    """
    client, path = client_for(source, policy, budget)
    store = repo.object_store
    have_list = _commits(repo, haves)

    def determine_wants(refs: Mapping[Ref, ObjectID], depth: int | None = None) -> list[ObjectID]:
        shas = {ObjectID(sha.encode()) for sha in wanted_refs(refs).values()}
        return sorted(sha for sha in shas if sha not in store)

    with tempfile.TemporaryFile(prefix="incoming-", dir=store.path) as pack:
        try:
            result = client.fetch_pack(
                path,
                determine_wants,
                repo.get_graph_walker(heads=have_list),
                pack.write,
            )
        except RemoteError:
            raise
        except NotGitRepository as exc:
            raise FetchFailed("no git repository at this URL") from exc
        except (GitProtocolError, HangupException, OSError, urllib3.exceptions.HTTPError) as exc:
            if budget.expired:
                raise budget.timed_out() from exc
            raise FetchFailed(f"the fetch failed: {exc}") from exc
        if result.object_format not in (None, "sha1"):
            raise FetchFailed(
                f"the repository uses {result.object_format} object names; the hub"
                " stores sha1 repositories only"
            )
        if pack.tell():
            pack.seek(0)
            try:
                # through a quarantine: a pack refused leaves nothing in the objects directory
                packs.add_thin_pack(store, pack.read, None, max_input_size=policy.max_bytes)
            except PackInputTooLarge as exc:
                raise budget.too_large() from exc
            except UNPACK_ERRORS as exc:
                raise FetchFailed(f"the remote sent a pack the hub cannot read: {exc}") from exc
    head = result.symrefs.get(Ref(b"HEAD"))
    head_branch = None
    if head is not None and head.startswith(b"refs/heads/"):
        head_branch = head[len(b"refs/heads/") :].decode("utf-8", "replace")
    return Fetched(refs=wanted_refs(result.refs), head=head_branch)
