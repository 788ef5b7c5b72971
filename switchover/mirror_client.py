"""The shadow copies' HTTP/1.1 client (switchover/proxy.py): keep-alive connections to green routes over plain
asyncio protocols with httptools parsing the answers.

A copy runs on the same event loop as the callers' requests, so what it costs there is what mirroring costs them;
aiohttp's client (blue's) spends about as much on a copy as on forwarding the caller's request. This one does only
what a copy needs: write one request whose body is already in memory, read an answer up to a limit, and keep the
connection for the next copy. No redirects, no cookies, no decompression (bodies are compared as the replica encoded
them, as before), no TLS (`supports` says which endpoints it takes; the proxy sends the others through aiohttp).
"""

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import httptools
import yarl

# Headers this client writes itself.
OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class MirrorError(Exception):
    """The copy got no complete answer: the connection failed, closed early, or the answer was not HTTP."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    authority: bytes  # the Host header
    prefix: str  # the endpoint URL's path, before the request's own


class _Connection(asyncio.Protocol):
    """One connection; one request at a time."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.answer: asyncio.Future[tuple[int, bytes]] | None = None
        self.parts: list[bytes] = []
        self.size = 0
        self.status = 0
        self.headers_done = False
        self.received = False  # a byte of this answer arrived
        self.keep_alive = False  # the answer ended and left the connection usable

    # --- asyncio.Protocol -------------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is one without subclassing it

    def data_received(self, data: bytes) -> None:
        self.received = True
        if self.answer is None or self.answer.done():  # nothing asked: the connection is unusable
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(MirrorError(f"not an HTTP answer: {exc}"))

    def eof_received(self) -> bool | None:
        self.connection_lost(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.answer is not None and not self.answer.done():
            if self.headers_done and not self.parser.should_keep_alive() and self.delimited_by_close():
                self.finish()  # an answer whose end is the end of the connection
            else:
                self.fail(MirrorError(f"connection closed before the answer's end ({exc or 'EOF'})"))
        if self.transport is not None:
            self.transport.close()

    # --- httptools callbacks ------------------------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        if self.size <= self.limit:
            self.parts.append(body)
        self.size += len(body)
        if self.size > self.limit:  # over the limit: enough is known (the caller counts it so); not reusable
            self.finish()
            self.close()

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()  # read now: the parser forgets it after the message
        self.finish()

    # --- ours ---------------------------------------------------------------------------------------------------

    def delimited_by_close(self) -> bool:
        return self.parser.get_http_version() is not None and not self.parser.should_keep_alive()

    def finish(self) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_result((self.status, b"".join(self.parts)))

    def fail(self, exc: Exception) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def send(self, request: bytes) -> "asyncio.Future[tuple[int, bytes]]":
        assert self.transport is not None
        self.answer = asyncio.get_running_loop().create_future()
        self.parts, self.size, self.status = [], 0, 0
        self.headers_done = self.received = self.keep_alive = False
        self.parser = httptools.HttpResponseParser(self)
        self.transport.write(request)
        return self.answer

    def reusable(self) -> bool:
        return not self.closed and self.keep_alive


class MirrorClient:
    """Copies to green routes: `request` sends one and returns green's status and body (at most `limit` + 1 bytes: a
    longer one is cut there). Raises MirrorError, OSError or TimeoutError (`connect` to open a connection, `total` for
    the whole copy) when there is no complete answer. Idle connections are kept per endpoint for `keepalive` seconds,
    below the replicas' own (uvicorn's: 5 s)."""

    def __init__(self, *, connect: float, total: float, limit: int, keepalive: float) -> None:
        self.connect, self.total, self.limit, self.keepalive = connect, total, limit, keepalive
        self.idle: dict[tuple[str, int], list[_Connection]] = {}
        self.endpoints: dict[str, Endpoint | None] = {}
        self.busy: set[_Connection] = set()

    def endpoint(self, url: str) -> Endpoint | None:
        """`url` as this client takes it (plain http), or None."""
        if url not in self.endpoints:
            parsed = yarl.URL(url)
            host = parsed.raw_host
            if parsed.scheme != "http" or not host or parsed.raw_user or parsed.query_string or parsed.fragment:
                self.endpoints[url] = None  # TLS or credentials: aiohttp's
            else:
                port = parsed.port or 80
                name = f"[{host}]" if ":" in host else host
                authority = name if port == 80 else f"{name}:{port}"
                self.endpoints[url] = Endpoint(host, port, authority.encode("ascii"), parsed.raw_path.rstrip("/"))
        return self.endpoints[url]

    def supports(self, url: str) -> bool:
        return self.endpoint(url) is not None

    async def request(
        self, url: str, method: str, target: str, headers: Iterable[tuple[str, str]], body: bytes
    ) -> tuple[int, bytes]:
        endpoint = self.endpoint(url)
        assert endpoint is not None, url
        lines = [f"{method} {endpoint.prefix}{target} HTTP/1.1\r\n".encode("latin-1"), b"host: ", endpoint.authority,
                 b"\r\n"]  # fmt: skip
        for name, value in headers:
            if name.lower() not in OWN_HEADERS:
                lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
            lines.append(b"content-length: %d\r\n" % len(body))
        lines += [b"\r\n", body]
        request = b"".join(lines)
        async with asyncio.timeout(self.total):
            while True:
                connection, reused = await self.acquire(endpoint)
                self.busy.add(connection)
                try:
                    answer = await connection.send(request)
                except MirrorError:
                    if reused and not connection.received:  # a kept connection the replica had closed: once more
                        continue
                    raise
                finally:
                    self.busy.discard(connection)
                    if connection.reusable():
                        connection.idle_since = time.monotonic()
                        self.idle.setdefault((endpoint.host, endpoint.port), []).append(connection)
                    else:
                        connection.close()
                return answer

    async def acquire(self, endpoint: Endpoint) -> tuple[_Connection, bool]:
        idle = self.idle.get((endpoint.host, endpoint.port))
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < self.keepalive:
                return connection, True
            connection.close()
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.connect):
            _, protocol = await loop.create_connection(lambda: _Connection(self.limit), endpoint.host, endpoint.port)
        return protocol, False

    def close(self) -> None:
        for connections in self.idle.values():
            for connection in connections:
                connection.close()
        self.idle.clear()
        for connection in self.busy:
            connection.close()
