"""`switchover proxy`: forwards `/{deployment name}/...` to the deployment's ACTIVE routes, by traffic ratio.

The routing table is reloaded whenever the database announces a change (LISTEN/NOTIFY) and every second. A request
whose route went away meanwhile (a connection refused or dropped) is retried on a freshly loaded table, so requests
in flight across a promotion do not fail.
"""

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator

import httpx
from databases import Database
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from store import notifications, replicas

log = logging.getLogger("switchover.proxy")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}
RETRYABLE = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectTimeout)


class TrafficTable:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.routes: dict[str, list[replicas.Destination]] = {}
        self.lock = asyncio.Lock()

    async def reload(self) -> None:
        async with self.lock:
            self.routes = await replicas.traffic_table(self.db)

    def pick(self, name: str) -> replicas.Destination | None:
        destinations = self.routes.get(name)
        if not destinations:
            return None
        return random.choices(destinations, weights=[d.traffic_ratio for d in destinations])[0]


def create_proxy(db: Database, url: str, *, attempts: int = 3, refresh_seconds: float = 1.0) -> Starlette:
    table = TrafficTable(db)
    client = httpx.AsyncClient(timeout=30.0)

    async def forward(request: Request) -> Response:
        name, rest = request.path_params["name"], request.path_params["rest"]
        body = await request.body()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        for attempt in range(attempts):
            destination = table.pick(name)
            if destination is None:
                return JSONResponse({"error": f"deployment {name!r} has no route taking traffic"}, status_code=503)
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
            return Response(answer.content, status_code=answer.status_code, headers=out)
        return JSONResponse({"error": f"no route of {name!r} answered after {attempts} attempts"}, status_code=502)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "up", "deployments": sorted(table.routes)})

    async def refresh_periodically() -> None:
        while True:
            await asyncio.sleep(refresh_seconds)
            with contextlib.suppress(Exception):
                await asyncio.create_task(table.reload())  # a fresh `databases` connection binding each time

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await db.connect()
        await table.reload()
        loop = asyncio.get_running_loop()
        listener = await notifications.listen(url, lambda _: loop.create_task(table.reload()))
        refresher = asyncio.create_task(refresh_periodically())
        try:
            yield
        finally:
            refresher.cancel()
            await listener.close()
            await client.aclose()
            await db.disconnect()

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/{name}/{rest:path}", forward, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]),
        ],
        lifespan=lifespan,
    )
