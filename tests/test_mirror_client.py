"""The shadow copies' HTTP client (switchover/mirror_client.py) against a raw server that answers each request as the
test says: the ways an HTTP/1.1 answer can be delimited, answers over the limit, a kept connection the server closed,
a server that never answers, and one that does not speak HTTP."""

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from switchover.mirror_client import MirrorClient, MirrorError

Answer = Callable[[bytes, asyncio.StreamWriter], bytes | None]  # request head → what to write (None: nothing)


class Server:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.heads: list[bytes] = []
        self.bodies: list[bytes] = []
        self.connections = 0
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                               if line.startswith(b"content-length:")), 0)  # fmt: skip
                self.heads.append(head)
                self.bodies.append(await reader.readexactly(length))
                out = self.answer(head, writer)
                if out is None:
                    await asyncio.sleep(3600)
                writer.write(out or b"")
                await writer.drain()
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Answer], "asyncio.Future[Server]"]]:
    servers: list[asyncio.Server] = []

    async def start(answer: Answer) -> Server:
        server = Server(answer)
        server.server = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        servers.append(server.server)
        return server

    yield start  # type: ignore[misc]
    for server in servers:
        server.close()


def client(**overrides: float) -> MirrorClient:
    options = {"connect": 2.0, "total": 2.0, "limit": 100, "keepalive": 4.0, **overrides}
    return MirrorClient(connect=options["connect"], total=options["total"], limit=int(options["limit"]),
                        keepalive=options["keepalive"])  # fmt: skip


def sized(body: bytes, status: str = "200 OK") -> bytes:
    return b"HTTP/1.1 %s\r\ncontent-length: %d\r\n\r\n%s" % (status.encode(), len(body), body)


async def test_a_copy_carries_method_target_headers_and_body_and_the_connection_is_kept(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve(lambda head, w: sized(b'{"ok": true}'))
    mirror = client()
    headers = [("x-switchover-shadow", "1"), ("content-length", "999"), ("Host", "elsewhere"), ("x-a", "b")]
    for _ in range(3):
        assert await mirror.request(server.url, "POST", "/v1/predict?x=1", headers, b"[1]") == (200, b'{"ok": true}')
    assert server.connections == 1
    head = server.heads[0].decode()
    assert head.startswith("POST /v1/predict?x=1 HTTP/1.1\r\n")
    assert f"host: {server.url.removeprefix('http://')}" in head
    assert "x-switchover-shadow: 1" in head and "x-a: b" in head
    assert "content-length: 3" in head and "999" not in head and "elsewhere" not in head
    assert server.bodies == [b"[1]"] * 3
    mirror.close()


async def test_chunked_and_close_delimited_answers_are_read_whole(serve) -> None:  # type: ignore[no-untyped-def]
    chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    server = await serve(lambda head, w: chunked)
    assert await client().request(server.url, "GET", "/", [], b"") == (200, b"abcde")

    def until_close(head: bytes, writer: asyncio.StreamWriter) -> bytes:
        writer.write(b"HTTP/1.1 503 Busy\r\nconnection: close\r\n\r\nlater")
        writer.close()
        return b""

    closing = await serve(until_close)
    assert await client().request(closing.url, "GET", "/", [], b"") == (503, b"later")


async def test_an_answer_over_the_limit_is_cut_past_it(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve(lambda head, w: sized(b"x" * 10_000))
    status, body = await client(limit=100).request(server.url, "GET", "/", [], b"")
    assert status == 200 and 100 < len(body) <= 10_000


async def test_a_kept_connection_the_server_closed_is_replaced(serve) -> None:  # type: ignore[no-untyped-def]
    def once(head: bytes, writer: asyncio.StreamWriter) -> bytes:
        writer.write(sized(b"one"))
        writer.close()  # after the answer, as a replica past its keep-alive
        return b""

    server = await serve(once)
    mirror = client()
    assert await mirror.request(server.url, "GET", "/", [], b"") == (200, b"one")
    await asyncio.sleep(0.05)
    assert await mirror.request(server.url, "GET", "/", [], b"") == (200, b"one")
    assert server.connections == 2


async def test_no_answer_is_a_timeout_and_garbage_or_a_cut_answer_an_error(serve) -> None:  # type: ignore[no-untyped-def]
    silent = await serve(lambda head, w: None)
    with pytest.raises(TimeoutError):
        await client(total=0.2).request(silent.url, "POST", "/", [], b"{}")

    garbage = await serve(lambda head, w: b"not http at all\r\n\r\n")
    with pytest.raises(MirrorError):
        await client().request(garbage.url, "GET", "/", [], b"")

    def cut(head: bytes, writer: asyncio.StreamWriter) -> bytes:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
        writer.close()
        return b""

    short = await serve(cut)
    with pytest.raises(MirrorError):
        await client().request(short.url, "GET", "/", [], b"")

    refused = await serve(lambda head, w: b"")
    url = refused.url
    assert refused.server is not None
    refused.server.close()
    await refused.server.wait_closed()
    with pytest.raises(OSError):
        await client().request(url, "GET", "/", [], b"")


def test_only_plain_http_endpoints_are_taken() -> None:
    mirror = client()
    assert mirror.supports("http://127.0.0.1:8000") and mirror.supports("http://model.local/base/")
    assert not mirror.supports("https://model.local") and not mirror.supports("http://user:pw@model.local")
    assert mirror.endpoint("http://model.local/base/").prefix == "/base"  # type: ignore[union-attr]
    assert mirror.endpoint("http://[::1]:81").authority == b"[::1]:81"  # type: ignore[union-attr]


def test_it_works_on_uvloop_as_the_proxy_runs_it() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        server = Server(lambda head, w: sized(b"ok"))
        server.server = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        try:
            mirror = client()
            for _ in range(2):
                assert await mirror.request(server.url, "POST", "/", [], b"{}") == (200, b"ok")
            assert server.connections == 1
        finally:
            server.server.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
