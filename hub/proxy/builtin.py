"""The built-in proxy: routes ``/user/<name>/[<server>/]`` and ``/services/<name>/`` to their
targets, everything else to the hub, HTTP and websockets, in the hub's process.

Why hand-written protocol code rather than an aiohttp client session: a reverse proxy built
on aiohttp's server and client (measured on 2 cores) only matches configurable-http-proxy,
spending ~45% of its time building client requests and responses it then takes apart
again. This proxy instead moves bytes between asyncio transports: ``httptools`` (llhttp,
Node.js's parser) finds where each request and response starts and ends, the heads are
rewritten (``X-Forwarded-*`` added, everything else kept, ``Host`` included, as CHP does),
bodies are streamed chunk by chunk as they arrive, and upstream connections are kept alive
in a pool per target. A websocket (any ``Upgrade``) becomes a plain two-way byte pipe once
the server answers ``101``. Flow control: when one side's write buffer fills, the other
side stops being read.

Traffic through a server's route is recorded as its activity (the culler reads it), and
handed to ``on_activity`` every ``activity_interval`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import cast
from urllib.parse import urlsplit

import httptools

from events import tasks
from hub.proxy import table

log = logging.getLogger(__name__)


# Idle upstream connections kept per target.
POOL_SIZE = 64
# Requests a client may pipeline ahead of the one being answered before it is paused.
MAX_QUEUED = 16
# A replay copy of a request (to retry once on a pooled connection the server had closed)
# is kept only for requests up to this size.
REPLAY_LIMIT = 64 * 1024
HOP_BY_HOP = frozenset({b"keep-alive", b"proxy-connection"})
FORWARDED = frozenset(
    {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port"}
)


class _Exchange:
    """One request and its response."""

    __slots__ = (
        "chunked",
        "client_keep_alive",
        "head_sent",
        "method",
        "out",
        "replay",
        "request_done",
        "route",
        "status",
        "upgrade",
        "upstream",
    )

    def __init__(self, route: table.Route, method: bytes, upgrade: bool) -> None:
        self.route = route
        self.method = method
        self.upgrade = upgrade
        self.out: list[bytes] | None = []  # bytes for upstream until it is attached
        self.replay: list[bytes] | None = []
        self.request_done = False
        self.chunked = False
        self.client_keep_alive = True
        self.upstream: _Upstream | None = None
        self.head_sent = False
        self.status = 0


class _Client(asyncio.Protocol):
    """A client connection: parses its requests, hands each to an upstream connection."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[_Exchange] = deque()
        self.current: _Exchange | None = None  # being parsed
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.peer = ""
        self.tunnel: _Upstream | None = None
        self.pending_upgrade_data = b""
        self.closing = False
        self.paused = False

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's are not subclasses
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else ""
        self.proxy.clients.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.proxy.clients.discard(self)
        self.closing = True
        if self.tunnel is not None:
            self.tunnel.close()
        for exchange in self.queue:
            if exchange.upstream is not None:
                exchange.upstream.close()
        self.queue.clear()

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.write(data)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.pending_upgrade_data = data[upgrade.args[0] :]
            assert self.transport is not None
            self.transport.pause_reading()  # until the server answers the upgrade
        except httptools.HttpParserError as exc:
            self.reply_error(400, f"bad request: {exc}")

    def pause_writing(self) -> None:
        exchange = self.queue[0] if self.queue else None
        upstream = self.tunnel or (exchange.upstream if exchange else None)
        if upstream is not None and upstream.transport is not None:
            upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        exchange = self.queue[0] if self.queue else None
        upstream = self.tunnel or (exchange.upstream if exchange else None)
        if upstream is not None and upstream.transport is not None:
            upstream.transport.resume_reading()

    # --- httptools callbacks ---

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        method = parser.get_method()
        url = self.url.decode("latin-1")
        path = url.split("?", 1)[0]
        if not path.startswith("/"):  # absolute-form: http://host/path
            path = urlsplit(url).path or "/"
        route = self.proxy.table.match(path)
        exchange = _Exchange(route, method, parser.should_upgrade())
        exchange.client_keep_alive = parser.should_keep_alive()
        if route.activity_key is not None:
            self.proxy.activity[route.activity_key] = time.time()
        self.proxy.requests += 1
        head, exchange.chunked = self._request_head(method, parser.get_http_version())
        self._send(exchange, head)
        self.current = exchange
        self.queue.append(exchange)
        if len(self.queue) == 1:
            self.proxy.attach(self, exchange)
        elif len(self.queue) > MAX_QUEUED and self.transport is not None:
            self.transport.pause_reading()
            self.paused = True

    def on_body(self, body: bytes) -> None:
        exchange = self.current
        if exchange is None:
            return
        if exchange.chunked:
            self._send(exchange, b"%x\r\n%b\r\n" % (len(body), body))
        else:
            self._send(exchange, body)

    def on_message_complete(self) -> None:
        exchange = self.current
        if exchange is None:
            return
        if exchange.chunked:
            self._send(exchange, b"0\r\n\r\n")
        exchange.request_done = True
        self.current = None

    # --- helpers ---

    def _request_head(self, method: bytes, version: str) -> tuple[bytes, bool]:
        chunked = False
        lines = [b"%b %b HTTP/%b\r\n" % (method, self.url, version.encode())]
        forwarded_for = b""
        host = b""
        for name, value in self.headers:
            lower = name.lower()
            if lower in HOP_BY_HOP:
                continue
            if lower in FORWARDED:
                if lower == b"x-forwarded-for":
                    forwarded_for = value + b", "
                continue
            if lower == b"host":
                host = value
            elif lower == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            lines.append(b"%b: %b\r\n" % (name, value))
        port = b"80"
        if self.proxy.port:
            port = str(self.proxy.port).encode()
        lines.append(
            b"X-Forwarded-For: %b%b\r\nX-Forwarded-Proto: http\r\n"
            b"X-Forwarded-Host: %b\r\nX-Forwarded-Port: %b\r\n\r\n"
            % (forwarded_for, self.peer.encode(), host, port)
        )
        return b"".join(lines), chunked

    def _send(self, exchange: _Exchange, data: bytes) -> None:
        if exchange.replay is not None:
            exchange.replay.append(data)
            if sum(map(len, exchange.replay)) > REPLAY_LIMIT:
                exchange.replay = None
        if exchange.out is not None:
            exchange.out.append(data)
        elif exchange.upstream is not None:
            exchange.upstream.write(data)

    def write(self, data: bytes) -> None:
        """Send bytes to the client."""
        if self.transport is not None and not self.closing:
            self.transport.write(data)

    def reply_error(self, status: int, message: str) -> None:
        """Answer with a short plain-text error and close."""
        body = message.encode()
        reasons = {400: b"Bad Request", 502: b"Bad Gateway", 503: b"Service Unavailable"}
        self.write(
            b"HTTP/1.1 %d %b\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%b"
            % (status, reasons.get(status, b"Error"), len(body), body)
        )
        self.close()

    def close(self) -> None:
        """Close after what is written has been sent."""
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def finished(self, exchange: _Exchange, reusable: bool) -> None:
        """The response of the first queued exchange is complete."""
        if self.queue and self.queue[0] is exchange:
            self.queue.popleft()
        upstream = exchange.upstream
        exchange.upstream = None
        if upstream is not None:
            upstream.exchange = None
            if reusable and exchange.request_done:
                self.proxy.release(upstream)
            else:
                upstream.close()
        if (
            not exchange.client_keep_alive
            or exchange.upgrade  # refused (not 101): the parser is past the upgrade
            or (not reusable and not exchange.request_done)
        ):
            self.close()
            return
        if self.paused and len(self.queue) <= MAX_QUEUED and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        if self.queue:
            self.proxy.attach(self, self.queue[0])

    def start_tunnel(self, upstream: _Upstream, leftover: bytes) -> None:
        """The server accepted the upgrade: from now on, bytes flow both ways unparsed."""
        self.tunnel = upstream
        upstream.tunnel = self
        if self.pending_upgrade_data:
            upstream.write(self.pending_upgrade_data)
            self.pending_upgrade_data = b""
        if leftover:
            self.write(leftover)
        if self.transport is not None:
            self.transport.resume_reading()


class _Upstream(asyncio.Protocol):
    """A connection to a target; answers one exchange at a time, then goes back to the pool."""

    def __init__(self, proxy: Proxy, address: tuple[str, int]) -> None:
        self.proxy = proxy
        self.address = address
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.client: _Client | None = None
        self.exchange: _Exchange | None = None
        self.tunnel: _Client | None = None
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunked = False
        self.received = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's are not subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.proxy.forget(self)
        if self.tunnel is not None:
            self.tunnel.close()
            return
        exchange, client = self.exchange, self.client
        if exchange is None or client is None:
            return
        if not self.received and exchange.replay is not None and exchange.request_done:
            # A pooled connection the server had closed: try once more on a new one.
            retry = exchange.replay
            exchange.replay = None
            exchange.out = list(retry)
            exchange.upstream = None
            self.exchange = None
            self.proxy.connect(client, exchange)
            return
        if exchange.head_sent:
            client.close()  # a body delimited by the end of the connection, or cut short
        else:
            client.reply_error(
                502, f"the server behind {exchange.route.prefix} closed the connection"
            )

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.write(data)
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            client = self.client
            if client is not None and self.exchange is not None and self.exchange.status == 101:
                exchange = self.exchange
                if client.queue and client.queue[0] is exchange:
                    client.queue.popleft()
                self.exchange = None
                client.start_tunnel(self, data[upgrade.args[0] :])
        except httptools.HttpParserError:
            if self.client is not None:
                if self.exchange is not None and not self.exchange.head_sent:
                    self.client.reply_error(502, "the server sent an invalid response")
                else:
                    self.client.close()
            self.close()

    def pause_writing(self) -> None:
        client = self.tunnel or self.client
        if client is not None and client.transport is not None:
            client.transport.pause_reading()

    def resume_writing(self) -> None:
        client = self.tunnel or self.client
        if client is not None and client.transport is not None and not client.paused:
            client.transport.resume_reading()

    # --- httptools callbacks ---

    def on_message_begin(self) -> None:
        self.reason = b""
        self.headers = []

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        exchange, client = self.exchange, self.client
        if exchange is None or client is None:
            return
        status = self.parser.get_status_code()
        exchange.status = status
        self.chunked = False
        lines = [
            b"HTTP/%b %d %b\r\n"
            % (self.parser.get_http_version().encode(), status, self.reason or b"Unknown")
        ]
        for name, value in self.headers:
            if name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
                self.chunked = True
            lines.append(b"%b: %b\r\n" % (name, value))
        lines.append(b"\r\n")
        client.write(b"".join(lines))
        exchange.head_sent = True
        if exchange.method == b"HEAD" and status >= 200:
            # llhttp cannot be told this response has no body; finish here and drop the
            # connection rather than let the parser wait for one.
            client.finished(exchange, reusable=False)

    def on_body(self, body: bytes) -> None:
        client = self.client
        if client is None or self.exchange is None:
            return
        if self.chunked:
            client.write(b"%x\r\n%b\r\n" % (len(body), body))
        else:
            client.write(body)

    def on_message_complete(self) -> None:
        exchange, client = self.exchange, self.client
        if exchange is None or client is None:
            return
        if exchange.status < 200 or exchange.status == 101:
            return  # 1xx: the final response follows; 101: the tunnel takes over
        if self.chunked:
            client.write(b"0\r\n\r\n")
        self.received = False
        client.finished(exchange, reusable=self.parser.should_keep_alive())

    # --- helpers ---

    def write(self, data: bytes) -> None:
        """Send bytes to the target."""
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def close(self) -> None:
        """Close the connection."""
        self.exchange = None
        self.client = None
        if self.transport is not None and not self.closed:
            self.transport.close()


class Proxy:
    """The built-in proxy server: ``start``/``close``, or ``async with``."""

    def __init__(
        self,
        hub_target: str,
        *,
        on_activity: table.OnActivity | None = None,
        activity_interval: float = 30.0,
    ) -> None:
        self.table = table.RouteTable(table.Route("/", hub_target))
        self.on_activity = on_activity
        self.activity_interval = activity_interval
        self.activity: dict[table.ActivityKey, float] = {}
        self.requests = 0
        self.port = 0
        self.clients: set[_Client] = set()
        self._idle: dict[tuple[str, int], list[_Upstream]] = {}
        self._server: asyncio.Server | None = None
        # the activity flusher and the connections being opened upstream
        self._tasks = tasks.TaskOwner("proxy", logger=log)

    async def start(
        self, ip: str, port: int, *, sock: socket.socket | None = None
    ) -> tuple[str, int]:
        """Listen on ``ip:port`` (0: a free port), or on ``sock``, bound already; the address
        it listens on."""
        loop = asyncio.get_running_loop()
        if sock is not None:
            self._server = await loop.create_server(lambda: _Client(self), sock=sock, backlog=1024)
        else:
            self._server = await loop.create_server(lambda: _Client(self), ip, port, backlog=1024)
        host, self.port = self._server.sockets[0].getsockname()[:2]
        self._tasks.start(self._flush_loop(), "proxy activity")
        return host, self.port

    async def close(self) -> None:
        """Stop listening, close every connection, write the last activity."""
        if self._server is not None:
            self._server.close()
        for client in list(self.clients):
            client.close()
        for idle in self._idle.values():
            for upstream in idle:
                upstream.close()
        self._idle.clear()
        await self._tasks.close()
        await self.flush_activity()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def __aenter__(self) -> Proxy:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def set_routes(self, routes: Iterable[table.Route]) -> None:
        """Replace the routing table (the default route to the hub stays)."""
        self.table.replace(routes)

    # --- activity ---

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.activity_interval)
            try:
                await self.flush_activity()
            except Exception:
                log.exception("could not record the proxy's activity")

    async def flush_activity(self) -> None:
        """Hand the activity seen since the last flush to ``on_activity``."""
        if not self.activity or self.on_activity is None:
            return
        seen, self.activity = self.activity, {}
        await self.on_activity(
            {key: datetime.fromtimestamp(stamp, UTC) for key, stamp in seen.items()}
        )

    # --- upstream connections ---

    def attach(self, client: _Client, exchange: _Exchange) -> None:
        """Give ``exchange`` an upstream connection: an idle one, or a new one."""
        address = exchange.route.address
        idle = self._idle.get(address)
        if idle and not exchange.upgrade:
            upstream = idle.pop()
            self._bind(upstream, client, exchange)
            return
        self.connect(client, exchange)

    def connect(self, client: _Client, exchange: _Exchange) -> None:
        """Open a new connection for ``exchange``."""
        self._tasks.start(self._connect(client, exchange), "proxy connect")

    async def _connect(self, client: _Client, exchange: _Exchange) -> None:
        host, port = address = exchange.route.address
        loop = asyncio.get_running_loop()
        try:
            _, upstream = await loop.create_connection(lambda: _Upstream(self, address), host, port)
        except OSError as exc:
            if client.queue and client.queue[0] is exchange:
                client.reply_error(
                    503, f"the server behind {exchange.route.prefix} does not answer: {exc}"
                )
            return
        if client.closing:
            upstream.close()
            return
        self._bind(upstream, client, exchange)

    def _bind(self, upstream: _Upstream, client: _Client, exchange: _Exchange) -> None:
        upstream.client = client
        upstream.exchange = exchange
        upstream.received = False
        exchange.upstream = upstream
        pending, exchange.out = exchange.out, None
        if pending:
            upstream.write(b"".join(pending))

    def release(self, upstream: _Upstream) -> None:
        """Keep a connection whose exchange is done for the next request to its target."""
        upstream.client = None
        if upstream.closed:
            return
        idle = self._idle.setdefault(upstream.address, [])
        if len(idle) < POOL_SIZE:
            idle.append(upstream)
        else:
            upstream.close()

    def forget(self, upstream: _Upstream) -> None:
        """A connection closed: drop it from the pool."""
        idle = self._idle.get(upstream.address)
        if idle and upstream in idle:
            idle.remove(upstream)
