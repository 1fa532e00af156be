"""git's smart HTTP protocol at ``/hub/git/<owner>/<name>.git``: clone, fetch, pull and push.

dulwich's protocol handlers (``UploadPackHandler``, ``ReceivePackHandler``) are called
directly, in the git thread pool, through a bridge that streams both ways: the handler's
``recv`` reads the request body as it arrives and its ``write`` sends the response as it is
made, each a hop to the event loop with a timeout, so a 50 MB push is never held in memory
whole and a client that stops sending is dropped. Who may use the project is decided first,
in plain aiohttp code (``git_auth``: tokens as git's credentials, never the login cookie, so
a page in a browser cannot push in its user's name), before the response starts: after that
the status is 200 and a failure can only be told in band, or by closing the connection.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from aiohttp import streams, web
from dulwich.errors import (
    ApplyDeltaError,
    ChecksumMismatch,
    GitProtocolError,
    ObjectFormatException,
)
from dulwich.graph import can_fast_forward
from dulwich.object_store import PackInputTooLarge
from dulwich.objects import Commit, ObjectID, Tag
from dulwich.pack import DeltaCycle, UnresolvedDeltas
from dulwich.protocol import ReceivableProtocol
from dulwich.refs import DictRefsContainer, Ref
from dulwich.repo import Repo
from dulwich.server import Backend, BackendRepo, ReceivePackHandler, UploadPackHandler

from events import models, store
from hub.auth import access
from hub.context import HUB
from hub.projects import git_auth, packs, push, refs, storage, upload_pack

log = logging.getLogger(__name__)

UPLOAD = "git-upload-pack"
RECEIVE = "git-receive-pack"
SERVICES = (UPLOAD, RECEIVE)
NO_CACHE = {
    "Cache-Control": "no-cache, max-age=0, must-revalidate",
    "Pragma": "no-cache",
    "Expires": "Fri, 01 Jan 1980 00:00:00 GMT",
}
# Each hop between the handler's thread and the event loop costs up to the interpreter's
# switch interval (5 ms) in waiting for the GIL, measured here: a 5 MB clone in 64 KB writes
# spent more time hopping than packing. So writes are gathered up to this size (and always
# sent before the handler reads again), and reads take what has arrived, up to as much.
HOP_BYTES = 1024 * 1024
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
)


class ClientGone(OSError):
    """The git client stopped sending or reading for longer than the timeout, or left."""


# --- the bridge between dulwich's blocking handler and aiohttp's streams ----------------------


class Bridge:
    """Blocking ``recv``/``write`` for a handler thread, over an aiohttp request and response.

    The answer's head goes out with its first bytes, not before: a reverse proxy such as nginx
    stops passing a request's body on once the answer has begun (it is not full-duplex), and
    git sends a push's whole pack before it reads a byte, so an answer begun early would stall
    a large push behind nginx until the timeout."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        request: web.Request,
        response: web.StreamResponse,
        timeout_s: float,
    ) -> None:
        self._loop = loop
        self._request = request
        self._body: streams.StreamReader = request.content
        self._response = response
        self._timeout_s = timeout_s
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._received = memoryview(b"")
        self.received = 0
        self.sent = 0
        # set once the client is found silent or gone (dulwich may wrap the error it raised)
        self.gone: ClientGone | None = None

    def _wait(self, coro: Any) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(self._timeout_s)
        except futures.TimeoutError as exc:
            future.cancel()
            self.gone = ClientGone(f"the git client was silent for {self._timeout_s:g} s")
            raise self.gone from exc
        except (ConnectionError, asyncio.CancelledError, futures.CancelledError) as exc:
            self.gone = ClientGone(f"the git client went away: {exc}")
            raise self.gone from exc

    def recv(self, size: int) -> bytes:
        """At most ``size`` bytes of the body (``b""`` at its end), as ``socket.recv``."""
        if not self._received:
            self.flush()  # the client may wait for what we said before it sends more
            data: bytes = self._wait(self._body.read(HOP_BYTES))
            self.received += len(data)
            self._received = memoryview(data)
        chunk = bytes(self._received[:size])
        self._received = self._received[size:]
        return chunk

    def write(self, data: bytes) -> int:
        """Queue ``data`` for the client, sending once enough has gathered."""
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes >= HOP_BYTES:
            self.flush()
        return len(data)

    def flush(self) -> None:
        """Send what is queued."""
        if not self._pending:
            return
        chunk = b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        self._wait(self._send(chunk))
        self.sent += len(chunk)

    async def _send(self, chunk: bytes) -> None:
        if not self._response.prepared:
            await self._response.prepare(self._request)
        await self._response.write(chunk)


# --- the repository a handler sees -------------------------------------------------------------


class OneRepo(Backend):
    """A backend that serves the one repository already looked up and authorized."""

    def __init__(self, repo: Repo) -> None:
        self.repo = repo

    def open_repository(self, path: str) -> BackendRepo:
        """The repository, whatever the path."""
        return self.repo


def refs_snapshot(current: dict[str, str], default_branch: str) -> DictRefsContainer:
    """The project's refs from PostgreSQL as dulwich wants them, HEAD naming the default branch
    (when it exists: a HEAD to nowhere confuses clients more than none)."""
    values: dict[bytes, bytes] = {ref.encode(): sha.encode() for ref, sha in current.items()}
    default = f"refs/heads/{default_branch}"
    if default in current:
        values[b"HEAD"] = b"ref: " + default.encode()
    return DictRefsContainer(values)  # type: ignore[arg-type]


@dataclass
class PushContext:
    """What the receive-pack handler needs to record a push from its thread."""

    loop: asyncio.AbstractEventLoop
    event_store: store.EventStore
    project_id: UUID
    default_branch: str
    current: dict[str, str]
    pusher: models.Actor
    metadata: models.Metadata
    max_push_bytes: int
    timeout_s: float
    peels: storage.Peels
    recorded: store.AppendResult | None = None

    def record(self, commands: Sequence[refs.Command], commits: int) -> None:
        """Run the push transaction on the event loop; ``push.PushError`` if refused."""
        coro = push.record(
            self.event_store,
            self.project_id,
            commands,
            pusher=self.pusher,
            commits=commits,
            via="git",
            metadata=self.metadata,
        )
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        self.recorded = future.result(self.timeout_s)


class HubReceivePack(ReceivePackHandler):
    """receive-pack whose refs move only through the push transaction.

    dulwich's own ``_apply_pack`` ignores a failed compare-and-swap of a ref (it reports the
    push as done); this one stores the pack, checks every ref against the hub's rules, and
    lets ``push.record`` move them all in one transaction, or none.
    """

    def __init__(self, *args: Any, push_context: PushContext, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.push_context = push_context

    def _receive_max_input_size(self) -> int | None:
        return self.push_context.max_push_bytes

    def _apply_pack(
        self, refs_in: list[tuple[ObjectID, ObjectID, Ref]]
    ) -> Iterator[tuple[bytes, bytes]]:
        commands = [
            refs.Command(old=old.decode(), new=new.decode(), ref=ref.decode("utf-8", "replace"))
            for old, new, ref in refs_in
        ]
        names = [ref for _, _, ref in refs_in]
        if any(not c.deletes for c in commands):
            try:
                # through a quarantine: a refused pack leaves nothing behind
                packs.add_thin_pack(
                    self.repo.object_store,  # type: ignore[arg-type]  # a Repo on disk's
                    self.proto.read,
                    getattr(self.proto, "recv", None),
                    max_input_size=self._receive_max_input_size(),
                )
            except ClientGone:
                raise  # not a broken pack: nobody is left to be told, the connection ends
            except PackInputTooLarge:
                limit = self.push_context.max_push_bytes
                reason = f"the pack is larger than the hub's limit of {limit} bytes"
                yield (b"unpack", reason.encode())
                yield from ((name, b"unpacker error") for name in names)
                return
            except UnresolvedDeltas as exc:  # a thin pack against objects the hub lacks
                yield (b"unpack", _unresolved(exc).encode())
                yield from ((name, b"unpacker error") for name in names)
                return
            except UNPACK_ERRORS as exc:
                yield (b"unpack", str(exc).replace("\n", " ").encode("utf-8", "replace"))
                yield from ((name, b"unpacker error") for name in names)
                return
        yield (b"unpack", b"ok")
        reasons = refs.check(
            commands,
            default_branch=self.push_context.default_branch,
            kind_of=self._kind_of,
            fast_forward=self._fast_forward,
        )
        if any(reasons.values()):
            yield from _statuses(commands, reasons)
            return
        try:
            self.push_context.record(commands, self._count_commits(commands))
        except push.PushError as exc:
            yield from _statuses(commands, dict(exc.reasons))
            return
        # the next advertisement need not read what the new refs peel to
        self.push_context.peels.learn(
            {c.new: storage.peel(self.repo, c.new) for c in commands if not c.deletes}  # type: ignore[arg-type]
        )
        yield from ((name, b"ok") for name in names)

    def _kind_of(self, sha: str) -> str | None:
        try:
            obj = self.repo.object_store[sha.encode()]  # type: ignore[index]
        except KeyError:
            return None
        kind: str = obj.type_name.decode()
        return kind

    def _fast_forward(self, old: str, new: str) -> bool:
        try:
            return bool(can_fast_forward(self.repo, old.encode(), new.encode()))  # type: ignore[arg-type]
        except KeyError:
            return False

    def _count_commits(self, commands: Sequence[refs.Command]) -> int:
        """Commits the push brings that no ref of the project reached before."""
        store_ = self.repo.object_store
        include = []
        for command in commands:
            if command.deletes:
                continue
            obj = store_[command.new.encode()]  # type: ignore[index]
            while isinstance(obj, Tag):
                obj = store_[obj.object[1]]
            if isinstance(obj, Commit):
                include.append(obj.id)
        if not include:
            return 0
        exclude = [sha.encode() for sha in self.push_context.current.values()]
        walker = self.repo.get_walker(include=include, exclude=exclude)  # type: ignore[attr-defined]
        return sum(1 for _ in walker)


def _unresolved(exc: UnresolvedDeltas) -> str:
    if isinstance(exc, DeltaCycle):
        return "the pack's deltas form a cycle"
    shas = [sha.decode("ascii", "replace") for sha in exc.shas]
    more = f" and {len(shas) - 3} more" if len(shas) > 3 else ""
    return f"the pack has deltas against objects the hub does not have: {', '.join(shas[:3])}{more}"


def _statuses(
    commands: Sequence[refs.Command], reasons: dict[str, str | None]
) -> Iterator[tuple[bytes, bytes]]:
    for command in commands:
        reason = reasons.get(command.ref) or refs.ATOMIC_FAILED
        yield (command.ref.encode(), reason.encode("utf-8", "replace"))


def serve(
    repositories: storage.Repositories,
    project_id: UUID,
    snapshot: DictRefsContainer,
    service: str,
    advertise: bool,
    bridge: Bridge,
    push_context: PushContext | None,
) -> None:
    """Run one git request in this (pool) thread: blocking, through ``bridge``."""
    repo = repositories.open(project_id)
    try:
        repo.refs = snapshot  # refs live in PostgreSQL; the on-disk ones are never read
        repo.hooks = {}  # the hub's rules run in HubReceivePack, never scripts on disk
        proto = ReceivableProtocol(bridge.recv, bridge.write)
        if advertise:
            proto.write_pkt_line(b"# service=" + service.encode() + b"\n")
            proto.write_pkt_line(None)
        handler: UploadPackHandler | ReceivePackHandler
        if service == UPLOAD:
            handler = UploadPackHandler(
                OneRepo(repo), ["/"], proto, stateless_rpc=True, advertise_refs=advertise
            )
        elif push_context is None:  # receive-pack's advertisement alone: nothing to record
            handler = ReceivePackHandler(
                OneRepo(repo), ["/"], proto, stateless_rpc=True, advertise_refs=True
            )
        else:
            handler = HubReceivePack(
                OneRepo(repo),
                ["/"],
                proto,
                stateless_rpc=True,
                advertise_refs=advertise,
                push_context=push_context,
            )
        try:
            handler.handle()
        except ValueError as exc:
            # dulwich reads the client's lines with plain unpacking and int(): a malformed one
            # (two NULs before the capabilities, found by fuzzing) is a ValueError, the
            # client's protocol error, not the hub's (a 400, not a 500)
            raise GitProtocolError(f"malformed git request: {exc}") from exc
        bridge.flush()
    finally:
        repo.close()


def _drop(request: web.Request, response: web.StreamResponse) -> None:
    """End at once the connection of a client that stopped sending or reading. Closed the
    polite way, aiohttp would first read on what is left of the body (for 10 s more) or wait
    for a client that reads nothing to take the rest of the answer (for ever)."""
    response.force_close()
    if (transport := request.transport) is not None:
        transport.abort()


# --- the handlers -------------------------------------------------------------------------


async def info_refs(request: web.Request) -> web.StreamResponse:
    """``GET …/info/refs?service=git-upload-pack|git-receive-pack``: the ref advertisement."""
    service = request.query.get("service", "")
    if service not in SERVICES:
        return git_auth.text(
            403, "the hub serves git's smart HTTP protocol only: use git 1.6.6 or newer"
        )
    allowed = await git_auth.authorize(request, "write" if service == RECEIVE else "read")
    if isinstance(allowed, web.Response):
        return allowed
    native = request.app[storage.STORAGE].native
    if service == UPLOAD and native is not None:
        return await _advertise_natively(request, native, allowed.project)
    return await _run(request, service, allowed, advertise=True)


async def rpc(request: web.Request) -> web.StreamResponse:
    """``POST …/git-upload-pack`` (clone, fetch) or ``…/git-receive-pack`` (push)."""
    service = request.match_info["service"]
    expected = f"application/x-{service}-request"
    if request.content_type != expected:
        return git_auth.text(415, f"a {service} request has the content type {expected}")
    allowed = await git_auth.authorize(request, "write" if service == RECEIVE else "read")
    if isinstance(allowed, web.Response):
        return allowed
    native = request.app[storage.STORAGE].native
    if service == UPLOAD and native is not None:
        return await _serve_natively(request, native, allowed)
    return await _run(request, service, allowed, advertise=False)


def _advertisement_headers(service: str) -> dict[str, str]:
    return {"Content-Type": f"application/x-{service}-advertisement", **NO_CACHE}


def _service_line(service: str) -> bytes:
    return upload_pack.pkt_line(f"# service={service}\n".encode()) + upload_pack.pkt_line(None)


async def _advertise_natively(
    request: web.Request, native: upload_pack.NativeGit, project: Any
) -> web.StreamResponse:
    """upload-pack's ref advertisement from PostgreSQL's refs, as the installed git would
    write it; git itself writes the first one (and so tells its capabilities)."""
    place = request.app[storage.STORAGE]
    repositories = place.repositories
    project_id, default_branch = project["project_id"], project["default_branch"]
    async with request.app[HUB].store.pool.acquire() as conn:
        current = await push.current_refs(conn, project_id)
    if native.capabilities is None and current:
        gitdir = await place.workers.run(repositories.snapshot, project_id, current, default_branch)
        try:
            body = await native.advertise(gitdir, repositories.objects(project_id))
        finally:
            await place.workers.run(repositories.drop_snapshot, gitdir)
    else:
        peels, missing = repositories.peels.known(set(current.values()))
        if missing:
            peels |= await place.workers.run(repositories.peel, project_id, missing)
        body = upload_pack.advertisement(current, peels, default_branch, native.capabilities or ())
    return web.Response(body=_service_line(UPLOAD) + body, headers=_advertisement_headers(UPLOAD))


async def _serve_natively(
    request: web.Request, native: upload_pack.NativeGit, allowed: git_auth.Allowed
) -> web.StreamResponse:
    """``POST …/git-upload-pack`` through the installed git, on a snapshot of the refs."""
    place = request.app[storage.STORAGE]
    repositories = place.repositories
    project_id = allowed.project["project_id"]
    async with request.app[HUB].store.pool.acquire() as conn:
        current = await push.current_refs(conn, project_id)
    gitdir = await place.workers.run(
        repositories.snapshot, project_id, current, allowed.project["default_branch"]
    )
    response = web.StreamResponse(
        headers={"Content-Type": f"application/x-{UPLOAD}-result", **NO_CACHE}
    )
    ended = False
    try:
        await native.serve(gitdir, repositories.objects(project_id), request, response)
    except OSError as exc:
        if not response.prepared:
            # git could not even start: dulwich serves this one
            log.warning("git upload-pack for %s did not start: %s", project_id, exc)
            return await _run(request, UPLOAD, allowed, advertise=False)
        # the client (or git) was silent for too long, or the client left
        log.info("git upload-pack for %s ended: %s", project_id, exc)
        ended = True
    finally:
        # at shutdown the pool may be gone: the run's directory goes with it (Storage.running)
        if place.workers.running:
            await place.workers.run(repositories.drop_snapshot, gitdir)
    if ended:
        _drop(request, response)
        return response
    await response.write_eof()
    return response


async def _run(
    request: web.Request, service: str, allowed: git_auth.Allowed, *, advertise: bool
) -> web.StreamResponse:
    hub = request.app[HUB]
    place = request.app[storage.STORAGE]
    project = allowed.project
    async with hub.store.pool.acquire() as conn:
        current = await push.current_refs(conn, project["project_id"])
    loop = asyncio.get_running_loop()
    push_context = None
    if service == RECEIVE and not advertise:
        caller = allowed.caller
        assert caller is not None  # writing needs a caller
        if (
            length := request.content_length
        ) is not None and length > hub.settings.project_max_push_bytes:
            return git_auth.text(
                413,
                f"the push is larger than the hub's limit of"
                f" {hub.settings.project_max_push_bytes} bytes",
            )
        push_context = PushContext(
            loop=loop,
            event_store=hub.store,
            project_id=project["project_id"],
            default_branch=project["default_branch"],
            current=current,
            pusher=models.Actor(kind=caller.kind, name=caller.name),
            metadata=access.event_metadata(request, caller),
            max_push_bytes=hub.settings.project_max_push_bytes,
            timeout_s=place.io_timeout_s,
            peels=place.repositories.peels,
        )
    kind = "advertisement" if advertise else "result"
    response = web.StreamResponse(
        headers={"Content-Type": f"application/x-{service}-{kind}", **NO_CACHE}
    )
    bridge = Bridge(loop, request, response, place.io_timeout_s)
    try:
        await place.workers.run(
            serve,
            place.repositories,
            project["project_id"],
            refs_snapshot(current, project["default_branch"]),
            service,
            advertise,
            bridge,
            push_context,
        )
    except (ClientGone, GitProtocolError, OSError) as exc:
        # Once the answer has begun (the bridge starts it at its first write) all that is
        # left is to end the connection; before, git is told with a status of its own.
        log.info("git %s for %s ended: %s", service, project["project_id"], exc)
        if bridge.gone is not None:
            _drop(request, response)
        elif not response.prepared:
            status = 400 if isinstance(exc, GitProtocolError) else 500
            return git_auth.text(status, f"git {service} ended: {exc}")
        else:
            response.force_close()
        return response
    except Exception:
        log.exception("git %s for %s failed", service, project["project_id"])
        if not response.prepared:  # nothing sent yet: a 500, not an empty 200
            return git_auth.text(500, f"git {service} failed on the hub; see its log")
        response.force_close()
        return response
    if not response.prepared:  # nothing was written (the bridge begins the answer)
        await response.prepare(request)
    await response.write_eof()
    return response


def routes() -> list[web.RouteDef]:
    """The routes of git's smart HTTP protocol."""
    base = "/hub/git/{owner}/{name}"
    return [
        web.get(base + "/info/refs", info_refs),
        web.post(base + "/{service:git-upload-pack|git-receive-pack}", rpc),
    ]
