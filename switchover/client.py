"""A small GraphQL client for the operator commands: HTTP for queries and mutations, graphql-transport-ws for events."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import websockets


class Refused(Exception):
    """The server answered with a GraphQL error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Unreachable(Exception):
    """The server could not be reached."""


class Client:
    def __init__(self, url: str, token: str | None = None, *, timeout: float = 30) -> None:
        self.url = url
        self.token = token
        self.http = httpx.AsyncClient(timeout=timeout)

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def execute(self, query: str, **variables: Any) -> dict[str, Any]:
        try:
            response = await self.http.post(
                self.url, json={"query": query, "variables": variables}, headers=self.headers
            )
        except httpx.HTTPError as exc:
            raise Unreachable(f"cannot reach {self.url}: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            raise Unreachable(f"{self.url} answered HTTP {response.status_code} without a GraphQL response") from None
        if body.get("errors"):
            error = body["errors"][0]
            raise Refused(error.get("extensions", {}).get("code", "ERROR"), error.get("message", ""))
        return body["data"]

    async def subscribe(self, query: str, **variables: Any) -> AsyncIterator[dict[str, Any]]:
        """Each `next` payload's data, until the server completes or the connection drops."""
        ws_url = self.url.replace("https://", "wss://").replace("http://", "ws://")
        try:
            async with websockets.connect(ws_url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
                await ws.send(json.dumps({"type": "connection_init", "payload": self.headers}))
                ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if ack.get("type") != "connection_ack":
                    raise Unreachable(f"{ws_url} refused the subscription: {ack}")
                payload = {"query": query, "variables": variables}
                await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
                async for raw in ws:
                    message = json.loads(raw)
                    if message["type"] == "next":
                        if message["payload"].get("errors"):
                            error = message["payload"]["errors"][0]
                            raise Refused(error.get("extensions", {}).get("code", "ERROR"), error.get("message", ""))
                        yield message["payload"]["data"]
                    elif message["type"] == "error":
                        error = message["payload"][0]
                        raise Refused(error.get("extensions", {}).get("code", "ERROR"), error.get("message", ""))
                    elif message["type"] == "complete":
                        return
        except (OSError, websockets.WebSocketException) as exc:
            raise Unreachable(f"cannot subscribe at {ws_url}: {exc}") from None
