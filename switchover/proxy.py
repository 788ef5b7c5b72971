"""`switchover proxy`: forwards `/{deployment name}/...` to the deployment's ACTIVE routes, by traffic ratio.

The routing table is reloaded whenever the database announces a change (LISTEN/NOTIFY) and every second. A request
whose route went away meanwhile (a connection refused or dropped) is retried on a freshly loaded table, so requests
in flight across a promotion do not fail.

It counts what it forwards per deployment and revision (switchover/traffic_counts.py): on its own `GET /metrics`,
and as per-second aggregates flushed to PostgreSQL every `flush_seconds`, where the scheduler's BUILTIN checks read
them.
"""

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator

import httpx
from databases import Database
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from store import notifications, replicas
from switchover.traffic_counts import TrafficCounts

log = logging.getLogger("switchover.proxy")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}
RETRYABLE = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectTimeout)


PREVIEW_HEADER = "x-switchover-preview"


class TrafficTable:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.routes: dict[str, list[replicas.Destination]] = {}
        self.preview: dict[str, list[replicas.Destination]] = {}
        self.lock = asyncio.Lock()

    async def reload(self) -> None:
        async with self.lock:
            table = await replicas.traffic_table(self.db)
            self.routes, self.preview = table.traffic, table.preview

    def pick(self, name: str, *, preview: bool = False) -> replicas.Destination | None:
        """A route by traffic ratio; with `preview`, one of the deploying revision's healthy routes, evenly."""
        destinations = (self.preview if preview else self.routes).get(name)
        if not destinations:
            return None
        if preview:
            return random.choice(destinations)
        return random.choices(destinations, weights=[d.traffic_ratio for d in destinations])[0]


def create_proxy(
    db: Database,
    url: str,
    *,
    attempts: int = 3,
    refresh_seconds: float = 1.0,
    flush_seconds: float = 5.0,
    proxy_id: str | None = None,
    count: bool = True,
) -> Starlette:
    """The proxy app; `app.state.counts` is what it counted (its `flush(db)` writes them now). `count=False`
    forwards without counting: only the bench uses it, to measure what counting costs (bench/b_analysis.py)."""
    table = TrafficTable(db)
    client = httpx.AsyncClient(timeout=30.0)
    counts = TrafficCounts(proxy_id)

    async def forward(request: Request) -> Response:
        started = time.perf_counter()
        name = request.path_params["name"]
        tried, response = await send(request, name)
        if tried is not None and count:
            counts.count(name, tried, response.status_code, time.perf_counter() - started)
        return response

    async def send(request: Request, name: str) -> tuple[replicas.Destination | None, Response]:
        """The answer for the caller, and the route that gave it (or was tried last)."""
        rest = request.path_params["rest"]
        body = await request.body()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        tried: replicas.Destination | None = None
        preview = request.headers.get(PREVIEW_HEADER) == "1"
        for attempt in range(attempts):
            destination = table.pick(name, preview=preview)
            if destination is None:
                missing = (
                    "no revision being deployed with a healthy route to preview"
                    if preview
                    else "no route taking traffic"
                )
                unrouted = JSONResponse({"error": f"deployment {name!r} has {missing}"}, status_code=503)
                return tried, unrouted
            tried = destination
            try:
                answer = await client.request(
                    request.method,
                    f"{destination.endpoint_url}/{rest}",
                    params=request.query_params,
                    content=body,
                    headers=headers,
                )
            except RETRYABLE as exc:
                log.info("route %s did not answer (%s); attempt %d", destination.route_id, exc, attempt + 1)
                await table.reload()
                continue
            out = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP | {"content-encoding"}}
            out["x-switchover-route"] = destination.route_id
            return destination, Response(answer.content, status_code=answer.status_code, headers=out)
        failed = JSONResponse({"error": f"no route of {name!r} answered after {attempts} attempts"}, status_code=502)
        return tried, failed

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "up", "deployments": sorted(table.routes)})

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(counts.registry), media_type=CONTENT_TYPE_LATEST)

    async def refresh_periodically() -> None:
        while True:
            await asyncio.sleep(refresh_seconds)
            with contextlib.suppress(Exception):
                await asyncio.create_task(table.reload())  # a fresh `databases` connection binding each time

    async def flush_periodically(stopping: asyncio.Event) -> None:
        # Ends with a flush begun after the proxy was told to stop (its last requests answered), so that a proxy
        # shut down cleanly loses no counts.
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), flush_seconds)
            last = stopping.is_set()
            await asyncio.create_task(counts.flush(db))  # never raises; a fresh connection binding each time
            if last:
                return

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await db.connect()
        await table.reload()
        loop = asyncio.get_running_loop()
        listener = await notifications.listen(url, lambda _: loop.create_task(table.reload()))
        refresher = asyncio.create_task(refresh_periodically())
        stopping = asyncio.Event()
        flusher = asyncio.create_task(flush_periodically(stopping))
        try:
            yield
        finally:
            refresher.cancel()
            stopping.set()
            try:
                await asyncio.wait_for(flusher, timeout=5)
            except TimeoutError:
                log.warning("the last traffic flush did not finish in 5 s: its counts are lost")
            await listener.close()
            await client.aclose()
            await db.disconnect()

    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/metrics", metrics),
            Route("/{name}/{rest:path}", forward, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]),
        ],
        lifespan=lifespan,
    )
    app.state.counts = counts
    return app
