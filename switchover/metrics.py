"""Prometheus metrics of the subgraph, served at GET /metrics."""

import time

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter("switchover_graphql_requests_total", "GraphQL HTTP requests, by status code.", ["status"])
LATENCY = Histogram("switchover_graphql_request_seconds", "Time to answer a GraphQL HTTP request.")


class Measured:
    """Counts and times every request to the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            REQUESTS.labels(status=str(status)).inc()
            LATENCY.observe(time.perf_counter() - started)


async def metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
