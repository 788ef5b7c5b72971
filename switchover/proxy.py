"""`switchover proxy`: forwards `/{deployment name}/...` to the deployment's ACTIVE routes, by traffic ratio.

The routing table is reloaded whenever the database announces a change (LISTEN/NOTIFY) and every second. A request
whose route went away meanwhile (a connection refused or dropped) is retried on a freshly loaded table, so requests
in flight across a promotion do not fail.

It counts what it forwards per deployment and revision (switchover/traffic_counts.py): on its own `GET /metrics`,
and as per-second aggregates flushed to PostgreSQL every `flush_seconds`, where the scheduler's BUILTIN checks read
them.

Shadow traffic (SPEC §6): while a blue-green deployment with a shadow spec deploys a revision with HEALTHY routes,
`percent` % of the requests blue answered are also sent, in the background, to one of those green routes (with the
header `x-switchover-shadow: 1`); the caller has blue's answer already and never waits for the copy. Green's answer
is compared with blue's (switchover/shadow_compare.py) and counted as agreed, disagreed or a green error (no answer
within `shadow_timeout`, or a 5xx). Bodies above `shadow_max_body` bytes are not mirrored, nor are requests past
`shadow_max_in_flight` copies in flight (both counted on /metrics). Copies use a connection pool of their own, so a
green that never answers cannot take blue's connections.
"""

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from databases import Database
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from store import notifications, replicas, traffic
from store.models import ShadowSpec
from switchover.shadow_compare import Answer, Comparer
from switchover.traffic_counts import TrafficCounts

log = logging.getLogger("switchover.proxy")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}
RETRYABLE = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectTimeout)


PREVIEW_HEADER = "x-switchover-preview"
SHADOW_HEADER = "x-switchover-shadow"


class TrafficTable:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.routes: dict[str, list[replicas.Destination]] = {}
        self.preview: dict[str, list[replicas.Destination]] = {}
        self.shadow: dict[str, Comparer] = {}
        self.comparers: dict[ShadowSpec, Comparer] = {}  # each spec's JSONPath expressions parsed once
        self.lock = asyncio.Lock()

    async def reload(self) -> None:
        async with self.lock:
            table = await replicas.traffic_table(self.db)
            self.routes, self.preview = table.traffic, table.preview
            self.comparers = {spec: self.comparers.get(spec) or Comparer(spec) for spec in table.shadow.values()}
            self.shadow = {name: self.comparers[spec] for name, spec in table.shadow.items()}

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
    shadow_timeout: float = 10.0,
    shadow_max_body: int = 1_000_000,
    shadow_max_in_flight: int = 100,
) -> Starlette:
    """The proxy app; `app.state.counts` is what it counted (its `flush(db)` writes them now), `app.state.mirrors`
    the shadow copies in flight. `count=False`
    forwards without counting: only the bench uses it, to measure what counting costs (bench/b_analysis.py)."""
    table = TrafficTable(db)
    client = httpx.AsyncClient(timeout=30.0)
    mirror_client = httpx.AsyncClient(
        timeout=shadow_timeout,
        limits=httpx.Limits(max_connections=shadow_max_in_flight, max_keepalive_connections=shadow_max_in_flight),
    )
    counts = TrafficCounts(proxy_id)
    mirrors: set[asyncio.Task[None]] = set()  # copies in flight

    async def forward(request: Request) -> Response:
        started = time.perf_counter()
        name = request.path_params["name"]
        tried, response = await send(request, name)
        if tried is not None and count:
            counts.count(name, tried, response.status_code, time.perf_counter() - started)
        if name in table.shadow and "x-switchover-route" in response.headers:
            await maybe_mirror(request, name, tried, response)
        return response

    async def maybe_mirror(request: Request, name: str, blue: replicas.Destination | None, response: Response) -> None:
        """Start a copy of a request blue answered to a green route, when it is picked and within the bounds."""
        comparer = table.shadow[name]
        if request.headers.get(PREVIEW_HEADER) == "1" or random.random() * 100 >= comparer.spec.percent:
            return
        green = table.pick(name, preview=True)
        if green is None or blue is None or green.revision_id == blue.revision_id:
            return
        body = await request.body()
        if len(body) > shadow_max_body:
            counts.skipped(name, green, "body_too_large")
            return
        if len(mirrors) >= shadow_max_in_flight:
            counts.skipped(name, green, "too_many_in_flight")
            return
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers[SHADOW_HEADER] = "1"
        copy = Copy(request.method, request.path_params["rest"], str(request.query_params), body, headers)
        task = asyncio.create_task(mirror(name, green, comparer, copy, Answer(response.status_code, response.body)))
        mirrors.add(task)
        task.add_done_callback(mirrors.discard)

    async def mirror(name: str, green: replicas.Destination, comparer: Comparer, copy: "Copy", blue: Answer) -> None:
        """Send the copy, compare, count: exactly one of agreed, disagreed, green_error (cancelled: a green error)."""
        try:
            answer = await mirror_client.request(
                copy.method, f"{green.endpoint_url}/{copy.rest}", params=copy.query, content=copy.body,
                headers=copy.headers,
            )  # fmt: skip
        except asyncio.CancelledError:
            counts.shadow(name, green, "green_error")
            raise
        except Exception as exc:  # no answer, a timeout, a broken one: green's failure, never the caller's
            log.debug("shadow copy to route %s failed: %s", green.route_id, exc)
            counts.shadow(name, green, "green_error")
            return
        if answer.status_code >= 500:
            counts.shadow(name, green, "green_error")
            return
        comparison = comparer.compare(blue, Answer(answer.status_code, answer.content))
        if comparison.agreed:
            counts.shadow(name, green, "agreed")
            return
        sample = traffic.ShadowSample(
            request=traffic.truncated(copy.describe()),
            blue_answer=traffic.truncated(describe_answer(blue)),
            green_answer=traffic.truncated(describe_answer(Answer(answer.status_code, answer.content))),
        )
        counts.shadow(name, green, "disagreed", sample)

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
            for task in list(mirrors):  # copies still in flight end as green errors, counted before the last flush
                task.cancel()
            await asyncio.gather(*mirrors, return_exceptions=True)
            stopping.set()
            try:
                await asyncio.wait_for(flusher, timeout=5)
            except TimeoutError:
                log.warning("the last traffic flush did not finish in 5 s: its counts are lost")
            await listener.close()
            await client.aclose()
            await mirror_client.aclose()
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
    app.state.mirrors = mirrors
    return app


@dataclass(frozen=True)
class Copy:
    """What a mirrored request carries to green."""

    method: str
    rest: str
    query: str
    body: bytes
    headers: dict[str, str]

    def describe(self) -> str:
        """For a sample: method, path, query and body, never headers (they may carry credentials)."""
        query = f"?{self.query}" if self.query else ""
        return f"{self.method} /{self.rest}{query}\n\n{self.body.decode(errors='replace')}"


def describe_answer(answer: Answer) -> str:
    return f"{answer.status}\n\n{answer.body.decode(errors='replace')}"
