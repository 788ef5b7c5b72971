"""A minimal HTTP/1.1 keep-alive client on asyncio streams.

The bench measures the server, not the client: this client costs a few tens of microseconds per request, where
httpx costs several hundred, which on a 2-core machine would be taken from the server under test.
"""

import asyncio
import json
from typing import Any


class HTTPError(Exception):
    pass


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except (ConnectionError, OSError):
                pass
            self._reader = self._writer = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """One request; reconnects once if the kept-alive connection was closed by the server."""
        for attempt in (1, 2):
            if self._writer is None:
                await self._open()
            try:
                return await self._exchange(method, path, body)
            except (ConnectionError, asyncio.IncompleteReadError, HTTPError):
                await self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _exchange(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        assert self._reader is not None and self._writer is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self._writer.write(head.encode() + b"\r\n" + body)
        header = await self._reader.readuntil(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise HTTPError(f"bad status line {lines[0]!r}")
        status = int(parts[1])
        length = None
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                close = True
            elif name == "transfer-encoding" and "chunked" in value.lower():
                raise HTTPError("chunked responses are not supported by the bench client")
        if length is None:
            raise HTTPError("response without Content-Length")
        payload = await self._reader.readexactly(length)
        if close:
            await self.close()
        return status, payload

    async def graphql(self, query: str, variables: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        status, payload = await self.request("POST", "/graphql", body)
        return status, json.loads(payload)
