"""The HTTP machinery `switchover proxy` could be built on, each reduced to streaming pass-through to one upstream (no
routing table, counting or shadow), so that only the machinery differs:
`python -m bench.proxy_candidates --client aiohttp|httpx --http httptools|h11 --port PORT --upstream URL`.
`/{anything}/{rest}` is forwarded to `{upstream}/{rest}`, as the product does.
"""

import argparse
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import uvicorn
from starlette.types import Receive, Scope, Send

from switchover.proxy_headers import end_to_end


async def body_of(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


def target(scope: Scope) -> str:
    query = scope["query_string"]
    return (scope["raw_path"][1:].partition(b"/")[2] + (b"?" + query if query else b"")).decode()


def has_body(scope: Scope) -> bool:
    return any(n in (b"content-length", b"transfer-encoding") for n, _ in scope["headers"])


def aiohttp_app(upstream: str) -> Any:
    session: aiohttp.ClientSession | None = None

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal session
        if scope["type"] != "http":
            return
        if session is None:
            session = aiohttp.ClientSession(auto_decompress=False, connector=aiohttp.TCPConnector(limit=0))
        rest = target(scope)
        headers = {k.decode(): v.decode() for k, v in end_to_end(scope["headers"], also=frozenset({b"host"}))}
        data = body_of(receive) if has_body(scope) else None
        async with session.request(scope["method"], f"{upstream}/{rest}", data=data, headers=headers) as answer:
            await send({"type": "http.response.start", "status": answer.status,
                        "headers": end_to_end(answer.raw_headers)})  # fmt: skip
            async for chunk in answer.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

    return app


def httpx_app(upstream: str) -> Any:
    client = httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=None, max_keepalive_connections=100))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        rest = target(scope)
        headers = end_to_end(scope["headers"], also=frozenset({b"host"}))
        content = body_of(receive) if has_body(scope) else None
        request = client.build_request(scope["method"], f"{upstream}/{rest}", headers=headers, content=content)
        answer = await client.send(request, stream=True)
        try:
            await send({"type": "http.response.start", "status": answer.status_code,
                        "headers": end_to_end(answer.headers.raw)})  # fmt: skip
            async for chunk in answer.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await answer.aclose()

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--client", choices=["aiohttp", "httpx"], required=True)
    parser.add_argument("--http", choices=["httptools", "h11"], required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    app = (aiohttp_app if args.client == "aiohttp" else httpx_app)(args.upstream)
    loop = "uvloop" if args.http == "httptools" else "asyncio"
    uvicorn.run(app, port=args.port, http=args.http, loop=loop, log_level="warning", lifespan="off",
                server_header=False, date_header=False)  # the replica's pass through, as in the product
