"""`switchover proxy`: forwards `/{deployment name}/...` to the deployment's ACTIVE routes, by traffic ratio (SPEC §7).

Bodies stream both ways as they arrive (chunked, server-sent events, large bodies), with back-pressure: the caller's
body is read only as fast as the replica takes it, and the replica's answer only as fast as the caller takes it. The
HTTP machinery (uvicorn with httptools in front, an aiohttp connection pool behind) was chosen by measuring it against
the alternatives: bench/b_proxy_machinery.py.

Failures: a request whose connection could not be opened is retried on another route, never on one that refused it
for this request, and a refusing route is avoided by every request for `avoid_seconds` (a killed replica costs
nothing while its revision has another route up). So is one whose connection the replica closed without a byte of
answer, when it can be sent again whole (see EMPTY_ANSWER). Otherwise a request that was sent is never retried (a
first byte that does not come in time is a 504); an answer cut off midway ends the caller's connection without its
end (an incomplete body), never as a truncated 200.

The routing table is reloaded whenever the database announces a change (LISTEN/NOTIFY, re-established by itself after
an outage, then followed by a full reload) and every `refresh_seconds`. A reload that fails keeps the last table: the
proxy serves through a database outage and never turns a request into an error because of it.

It counts what it forwards per deployment and revision (switchover/traffic_counts.py): on its own `GET /metrics`,
and as per-second aggregates flushed to PostgreSQL every `flush_seconds`, where the scheduler's BUILTIN checks read
them.

Shadow traffic (SPEC §6): while a blue-green deployment with a shadow spec deploys a revision with HEALTHY routes,
`percent` % of the requests are also sent, in the background, to one of those green routes (with the header
`x-switchover-shadow: 1`) once blue answered; the caller never waits for the copy. Only a picked request whose
`Content-Length` is at most `shadow_max_body` is held in memory (to send it twice); blue's answer is kept while it
streams to the caller up to max(`shadow_max_body`, 64 KiB), and green's is read up to that, so copies take at most
`shadow_max_in_flight` × 3 × that many bytes. Green's answer is compared with blue's
(switchover/shadow_compare.py) and counted as agreed, disagreed or a green error (no answer within
`shadow_timeout`, or a 5xx); a green answer larger than the limit counts as disagreed (blue's was not). Requests not
mirrored although picked are counted by reason (body_too_large, answer_too_large, too_many_in_flight). Copies use a
connection pool of their own (switchover/mirror_client.py: a lean HTTP/1.1 client, as a copy's cost lands on the
callers' event loop), so a green that never answers cannot take blue's connections. A copy runs on the same
event loop as the callers' requests, behind them: it starts once blue's answer was sent, and each of its steps
(sending it, comparing green's answer) waits until no forward has work for the loop, i.e. every request in flight
is waiting for its replica or its caller (`Forwarder.busy`), for at most SHADOW_PATIENCE.
"""

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import aiohttp
import yarl
from databases import Database
from multidict import CIMultiDict
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from store import notifications, replicas, traffic
from store.models import ShadowSpec
from switchover import tracing
from switchover.mirror_client import MirrorClient
from switchover.proxy_headers import end_to_end, forwarded, value_of
from switchover.shadow_compare import Answer, Comparer
from switchover.traffic_counts import TrafficCounts

log = logging.getLogger("switchover.proxy")

PREVIEW_HEADER = "x-switchover-preview"
SHADOW_HEADER = "x-switchover-shadow"
ROUTE_HEADER = b"x-switchover-route"
# Request bodies up to this size with a known length are read before sending (they arrive at once anyway), so that
# the request can be sent again when a replica closes the connection without answering.
SMALL_BODY = 64 * 1024
# Answers up to this size with a known length are read whole and sent in one message (fewer writes, same first byte).
SMALL_ANSWER = 64 * 1024
# The client library writes these for the new hop itself (Host names the replica).
NOT_FORWARDED = frozenset({b"host"})
# Headers the client library would otherwise add on its own: the replica gets what the caller sent, no more.
NO_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
# The connection could not be opened: the request was not sent, another route may take it.
NOT_CONNECTED = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
# The replica closed (or reset) the connection without a byte of answer: a replica that was killed, or is being, and
# never read the request (a kept-alive connection it had closed, or one its dying listener accepted). Retried on
# another route when the request can be sent again whole (no body, or a small one read first), as HAProxy's
# `retry-on empty-response` does.
EMPTY_ANSWER = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
# How long a shadow copy's next step waits for a moment when no caller's request has work for the event loop, before
# it goes anyway (a proxy that is never idle still mirrors; copies waiting hold their place in `shadow_max_in_flight`).
SHADOW_PATIENCE = 0.1


@dataclass(frozen=True)
class Timeouts:
    """Seconds. `first_byte` runs from the end of the request to the answer's headers; `idle` between two chunks
    of either body; `avoid` is how long a route that refused a connection gets no request; `keepalive` how long an
    idle pooled connection is kept, below the replicas' own (uvicorn's: 5 s), so that the replica never closes one
    just as a request is written to it."""

    connect: float = 2.0
    first_byte: float = 60.0
    idle: float = 60.0
    avoid: float = 5.0
    keepalive: float = 4.0


class TrafficTable:
    def __init__(self, db: Database, *, avoid_seconds: float) -> None:
        self.db = db
        self.routes: dict[str, list[replicas.Destination]] = {}
        self.preview: dict[str, list[replicas.Destination]] = {}
        self.shadow: dict[str, Comparer] = {}
        self.comparers: dict[ShadowSpec, Comparer] = {}  # each spec's JSONPath expressions parsed once
        self.avoid_seconds = avoid_seconds
        self.avoided: dict[str, float] = {}  # route id → until when (monotonic) it refused connections
        self.wanted = False
        self.reloader: asyncio.Task[None] | None = None

    async def reload(self) -> None:
        table = await replicas.traffic_table(self.db)
        self.routes, self.preview = table.traffic, table.preview
        self.comparers = {spec: self.comparers.get(spec) or Comparer(spec) for spec in table.shadow.values()}
        self.shadow = {name: self.comparers[spec] for name, spec in table.shadow.items()}

    def reload_soon(self) -> None:
        """Reload in the background, never raising: the last table stays while the database is away. A change
        announced during a reload is followed by one more, since that reload may have read before it committed."""
        self.wanted = True
        if self.reloader is None or self.reloader.done():
            self.reloader = asyncio.get_running_loop().create_task(self._reload_while_wanted())

    async def _reload_while_wanted(self) -> None:
        while self.wanted:
            self.wanted = False
            try:
                await asyncio.create_task(self.reload())  # a fresh `databases` connection binding each time
            except Exception as exc:
                log.warning("traffic table not reloaded, the last one is kept: %s", exc)

    def avoid(self, destination: replicas.Destination) -> None:
        now = time.monotonic()
        self.avoided = {route: until for route, until in self.avoided.items() if until > now}  # routes that went away
        self.avoided[destination.route_id] = now + self.avoid_seconds

    def pick(
        self, name: str, *, preview: bool = False, exclude: set[str] | frozenset[str] = frozenset()
    ) -> replicas.Destination | None:
        """A route by traffic ratio (with `preview`, one of the deploying revision's healthy routes, evenly), not
        one in `exclude`, and not one avoided unless every other is too."""
        destinations = (self.preview if preview else self.routes).get(name)
        if not destinations:
            return None
        if exclude:
            destinations = [d for d in destinations if d.route_id not in exclude]
        if self.avoided:
            now = time.monotonic()
            fresh = [d for d in destinations if self.avoided.get(d.route_id, 0.0) <= now]
            destinations = fresh or destinations
        if not destinations:
            return None
        weights = [d.traffic_ratio for d in destinations]
        if preview or sum(weights) <= 0:
            return random.choice(destinations)
        return random.choices(destinations, weights=weights)[0]


class CallerGone(Exception):
    """The caller closed its connection."""


class AnswerCut(Exception):
    """The replica's answer ended before its end; raised to the server so that it aborts the caller's connection."""


@dataclass
class Progress:
    """How far a request got: whether the caller was sent the answer's status (an error is then too late for a 5xx)."""

    responded: bool = False
    working: bool = False  # counted in the forwarder's `busy`: it has work for the event loop now


@dataclass
class Shadowing:
    """A request picked for mirroring: where the copy goes, and what it carries."""

    comparer: Comparer
    green: replicas.Destination
    body: bytes = b""
    held: bool = True  # one of the forwarder's `shadow_max_in_flight` places, until the copy is sent or given up


class ProxyApp:
    """The ASGI application: `/health`, `/metrics` and the lifespan go to a small Starlette app, everything else is
    forwarded without a framework in between (the hottest path of the product)."""

    def __init__(self, control: Starlette, forwarder: "Forwarder") -> None:
        self.control, self.forwarder = control, forwarder
        self.state: State = control.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in ("/health", "/metrics"):
            raw = scope.get("raw_path") or scope["path"].encode()
            name, slash, rest = raw[1:].partition(b"/")
            if slash and name:
                await self.forwarder.forward(scope, receive, send, unquote(name.decode("latin-1")), rest)
                return
        await self.control(scope, receive, send)


class Forwarder:
    def __init__(
        self,
        table: TrafficTable,
        counts: TrafficCounts,
        *,
        attempts: int,
        count: bool,
        timeouts: Timeouts,
        shadow_timeout: float,
        shadow_max_body: int,
        shadow_max_in_flight: int,
    ) -> None:
        self.table, self.counts, self.attempts, self.counting, self.timeouts = table, counts, attempts, count, timeouts
        self.shadow_timeout, self.shadow_max_body, self.shadow_max_in_flight = (
            shadow_timeout, shadow_max_body, shadow_max_in_flight)  # fmt: skip
        # Answers are kept for comparison up to this size: a small one is read whole anyway, so keeping it costs
        # nothing more; the bound is for large (streamed) ones.
        self.shadow_max_answer = max(shadow_max_body, SMALL_ANSWER)
        self.mirrors: set[asyncio.Task[None]] = set()  # copies in flight
        # Requests picked for mirroring whose copy is not yet in flight: their body (and soon blue's answer) is held
        # in memory, so they take a place within `shadow_max_in_flight` from the moment they are picked.
        self.picked = 0
        # Forwards that have work for the event loop now: not waiting for a replica (to answer, or to send the next
        # chunk) or for a slow caller. A copy's steps wait until there is none (`behind_callers`).
        self.busy = 0
        self.quiet = asyncio.Event()
        self.quiet.set()
        self.session: aiohttp.ClientSession | None = None
        self.mirror_session: aiohttp.ClientSession | None = None
        self.mirror_client: MirrorClient | None = None

    async def start(self) -> None:
        t = self.timeouts
        sent = aiohttp.TraceConfig()
        sent.on_request_headers_sent.append(first_byte_clock)
        self.session = aiohttp.ClientSession(
            trace_configs=[sent],
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=t.keepalive, enable_cleanup_closed=False),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=t.connect),
            auto_decompress=False,  # bodies pass through as the replica encoded them
            skip_auto_headers=NO_AUTO_HEADERS,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self.mirror_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.shadow_max_in_flight, keepalive_timeout=t.keepalive),
            timeout=aiohttp.ClientTimeout(total=self.shadow_timeout, sock_connect=t.connect),
            auto_decompress=False,
            skip_auto_headers=NO_AUTO_HEADERS,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self.mirror_client = MirrorClient(connect=t.connect, total=self.shadow_timeout, limit=self.shadow_max_answer,
                                          keepalive=t.keepalive)  # fmt: skip

    async def stop(self) -> None:
        for task in list(self.mirrors):  # copies still in flight end as green errors, counted before the last flush
            task.cancel()
        await asyncio.gather(*self.mirrors, return_exceptions=True)
        if self.mirror_client is not None:
            self.mirror_client.close()
        for session in (self.session, self.mirror_session):
            if session is not None:
                await session.close()

    def count(self, name: str, destination: replicas.Destination, status: int, started: float) -> None:
        if self.counting:
            self.counts.count(name, destination, status, time.perf_counter() - started)

    async def forward(self, scope: Scope, receive: Receive, send: Send, name: str, rest: bytes) -> None:
        held: list[Shadowing] = []  # the place a request picked for mirroring holds is given back however it ends
        progress = Progress()
        self.working(progress, True)
        try:
            await self._forward(scope, receive, send, name, rest, held, progress)
        finally:
            self.working(progress, False)
            for shadowing in held:
                self.release(shadowing)

    def working(self, progress: Progress, now: bool) -> None:
        """Count a forward in `busy` (it has work for the event loop) or out of it (it waits for I/O)."""
        if progress.working is not now:
            progress.working = now
            self.busy += 1 if now else -1
            if self.busy:
                self.quiet.clear()
            else:
                self.quiet.set()

    @contextlib.contextmanager
    def waiting(self, progress: Progress) -> Iterator[None]:
        """Around an await on a replica or a slow caller: the forward has nothing for the event loop meanwhile."""
        self.working(progress, False)
        try:
            yield
        finally:
            self.working(progress, True)

    async def _forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        name: str,
        rest: bytes,
        held: list[Shadowing],
        progress: Progress,
    ) -> None:
        started = time.perf_counter()
        headers = end_to_end(scope["headers"], also=NOT_FORWARDED)
        client = scope.get("client")
        headers = forwarded(headers, peer=client[0] if client else None, scheme=scope.get("scheme", "http"))
        preview = value_of(headers, PREVIEW_HEADER.encode()) == b"1"
        length = value_of(headers, b"content-length")
        chunked = value_of(scope["headers"], b"transfer-encoding") is not None
        has_body = (length is not None and length != b"0") or chunked
        size = int(length) if length is not None and length.isdigit() else None
        shadowing = self.shadowing(name, preview)
        if shadowing is not None:
            held.append(shadowing)
        if shadowing is not None and has_body and (size is None or size > self.shadow_max_body):
            self.counts.skipped(name, shadowing.green, "body_too_large")  # unknown or too large: streamed
            shadowing = None
        whole: bytes | None = None  # a body read before sending: it can be sent again (a retry, a shadow copy)
        if has_body and size is not None and (size <= SMALL_BODY or shadowing is not None):
            try:
                whole = await read_all(receive, self.timeouts.idle)
            except (CallerGone, TimeoutError):  # gone, or too slow to send a small body: nobody to answer
                return
        if shadowing is not None and whole is not None:
            shadowing.body = whole
        query = scope.get("query_string") or b""
        target = b"/" + rest + (b"?" + query if query else b"")
        streamed = has_body and whole is None
        body = RequestBody(receive, self.timeouts.idle, self.timeouts.first_byte) if streamed else None
        loop = asyncio.get_running_loop()
        outgoing = CIMultiDict((k.decode("latin-1"), v.decode("latin-1")) for k, v in headers)
        tracing.inject(outgoing)  # the replica continues the proxy's span, not the caller's (a flag read when off)

        tried: set[str] = set()
        destination: replicas.Destination | None = None
        answer: aiohttp.ClientResponse | None = None
        try:
            async with asyncio.timeout(None) as deadline:
                for _ in range(self.attempts):
                    picked = self.table.pick(name, preview=preview, exclude=tried)
                    if picked is None:
                        break
                    destination = picked
                    tried.add(destination.route_id)
                    url = yarl.URL(destination.endpoint_url.rstrip("/") + target.decode("latin-1"), encoded=True)
                    data: Any = body.chunks(deadline) if body else whole
                    deadline.reschedule(loop.time() + self.timeouts.connect + self.timeouts.first_byte)
                    try:
                        assert self.session is not None
                        with self.waiting(progress):
                            answer = await self.session.request(scope["method"], url, data=data, headers=outgoing,
                                                                allow_redirects=False, trace_request_ctx=Clock(
                                                                    deadline, self.timeouts.first_byte))  # fmt: skip
                        break
                    except NOT_CONNECTED as exc:
                        if body is not None and body.started:  # cannot happen before connecting; never resend half
                            await self.fail(send, name, destination, 502, "the route failed while the request was sent",
                                            started)  # fmt: skip
                            return
                        log.info("route %s refused a connection (%s); trying another", destination.route_id, exc)
                        self.table.avoid(destination)
                        self.table.reload_soon()
                        continue
                    except TimeoutError:
                        if body is not None and body.gone:
                            return
                        await self.fail(send, name, destination, 504, "the route did not answer in time", started)
                        return
                    except EMPTY_ANSWER as exc:
                        if body is None:  # nothing streamed: the same request can go elsewhere
                            log.info("route %s closed the connection without answering (%s); trying another",
                                     destination.route_id, exc)  # fmt: skip
                            self.table.avoid(destination)
                            self.table.reload_soon()
                            continue
                        if body.gone:
                            return
                        log.info("route %s failed after the request was sent: %s", destination.route_id, exc)
                        await self.fail(send, name, destination, 502, "the route failed to answer", started)
                        return
                    except (aiohttp.ClientError, OSError) as exc:
                        if body is not None and body.gone:
                            return
                        log.info("route %s failed after the request was sent: %s", destination.route_id, exc)
                        await self.fail(send, name, destination, 502, "the route failed to answer", started)
                        return
                if answer is None:
                    await self.unrouted(send, name, destination, preview, started)
                    return
                assert destination is not None
                try:
                    complete, kept = await self.relay(answer, send, destination, deadline, receive, body,
                                                      shadowing is not None, progress)  # fmt: skip
                except AnswerCut:
                    if not progress.responded:  # cut before the caller saw anything: it can still be told so
                        await self.fail(send, name, destination, 502, "the route's answer was cut off", started)
                        return
                    self.count(name, destination, 502, started)
                    raise
                finally:
                    answer.release()
        except TimeoutError:  # the deadline: no first byte in time, or a body idle too long
            if body is not None and body.gone:
                return
            assert destination is not None
            if not progress.responded:
                await self.fail(send, name, destination, 504, "the route did not answer in time", started)
                return
            self.count(name, destination, 502, started)
            raise AnswerCut(f"route {destination.route_id}: idle for {self.timeouts.idle} s") from None
        self.count(name, destination, answer.status, started)
        if shadowing is None or not complete:
            return
        if kept is None:
            self.counts.skipped(name, shadowing.green, "answer_too_large")
            return
        self.mirror(name, destination, shadowing, scope, target, outgoing, Answer(answer.status, kept))

    async def relay(
        self,
        answer: aiohttp.ClientResponse,
        send: Send,
        destination: replicas.Destination,
        deadline: asyncio.Timeout,
        receive: Receive,
        body: "RequestBody | None",
        keep: bool,
        progress: "Progress",
    ) -> tuple[bool, bytes | None]:
        """Stream the answer to the caller: whether the caller got all of it, and (with `keep`) the answer when it
        is within the shadow limit."""
        loop = asyncio.get_running_loop()
        out = end_to_end(answer.raw_headers)
        out.append((ROUTE_HEADER, destination.route_id.encode()))
        start: Message = {"type": "http.response.start", "status": answer.status, "headers": out}
        length = answer.content_length
        try:
            if length is not None and length <= SMALL_ANSWER:
                deadline.reschedule(loop.time() + self.timeouts.idle)
                with self.waiting(progress):
                    whole = await answer.read()
                deadline.reschedule(None)
                progress.responded = True
                await send(start)
                await send({"type": "http.response.body", "body": whole})
                return True, whole if keep and len(whole) <= self.shadow_max_answer else None
            progress.responded = True
            await send(start)
            kept: list[bytes] | None = [] if keep else None
            size = 0
            # A long answer (server-sent events) is abandoned as soon as the caller goes away.
            with CallerWatch(receive, body) as watch:
                try:
                    while True:
                        deadline.reschedule(loop.time() + self.timeouts.idle)
                        with self.waiting(progress):
                            chunk = await answer.content.readany()
                        deadline.reschedule(None)
                        if not chunk:
                            break
                        if kept is not None:
                            size += len(chunk)
                            kept.append(chunk)
                            if size > self.shadow_max_answer:  # not compared: stop keeping it
                                kept = None
                        with self.waiting(progress):  # a caller slower than the replica holds this up
                            await send({"type": "http.response.body", "body": chunk, "more_body": True})
                except asyncio.CancelledError:
                    if not watch.gone:
                        raise
                    current = asyncio.current_task()
                    if current is not None:
                        current.uncancel()
                    answer.close()
                    return False, None
            await send({"type": "http.response.body", "body": b""})
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            answer.close()
            log.info("answer of route %s cut off: %r", destination.route_id, exc)
            raise AnswerCut(f"route {destination.route_id}: {exc!r}") from exc
        return True, b"".join(kept) if kept is not None else None

    async def fail(
        self, send: Send, name: str, destination: replicas.Destination, status: int, why: str, started: float
    ) -> None:
        self.count(name, destination, status, started)
        await send_json(send, status, {"error": f"deployment {name!r}: {why}", "route": destination.route_id})

    async def unrouted(
        self, send: Send, name: str, tried: replicas.Destination | None, preview: bool, started: float
    ) -> None:
        if tried is not None:
            self.count(name, tried, 502, started)
            error = f"no route of {name!r} accepted a connection"
            await send_json(send, 502, {"error": error})
            return
        missing = "no revision being deployed with a healthy route to preview" if preview else "no route taking traffic"
        await send_json(send, 503, {"error": f"deployment {name!r} has {missing}"})

    # --- shadow traffic -----------------------------------------------------------------------------------------

    def shadowing(self, name: str, preview: bool) -> Shadowing | None:
        """Whether this request is picked for mirroring, decided before it is sent (its body must then be kept)."""
        comparer = self.table.shadow.get(name)
        if comparer is None or preview or random.random() * 100 >= comparer.spec.percent:
            return None
        green = self.table.pick(name, preview=True)
        if green is None:
            return None
        if len(self.mirrors) + self.picked >= self.shadow_max_in_flight:
            self.counts.skipped(name, green, "too_many_in_flight")
            return None
        self.picked += 1
        return Shadowing(comparer, green)

    def release(self, shadowing: Shadowing) -> None:
        if shadowing.held:
            shadowing.held = False
            self.picked -= 1

    def mirror(
        self,
        name: str,
        blue: replicas.Destination,
        shadowing: Shadowing,
        scope: Scope,
        target: bytes,
        headers: "CIMultiDict[str]",
        answer: Answer,
    ) -> None:
        green = shadowing.green
        self.release(shadowing)  # its place passes to the copy's task, counted in `mirrors`
        if green.revision_id == blue.revision_id:
            return
        headers[SHADOW_HEADER] = "1"  # blue's request was sent (the client library copied its headers): reused
        copy = Copy(scope["method"], target.decode("latin-1"), shadowing.body, headers)
        task = asyncio.get_running_loop().create_task(self.send_copy(name, green, shadowing.comparer, copy, answer))
        self.mirrors.add(task)
        task.add_done_callback(self.mirrors.discard)

    async def behind_callers(self) -> None:
        """Until no forward has work for the event loop (or `SHADOW_PATIENCE` has passed): a copy's next step (sending
        it, comparing its answer) never goes ahead of a caller's request. Two turns of the loop first, so that a
        request that has just arrived is read and its forwarding begun (counted in `busy`) before this looks."""
        loop = asyncio.get_running_loop()
        until = loop.time() + SHADOW_PATIENCE
        while True:
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            if not self.busy or loop.time() >= until:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(until):
                    await self.quiet.wait()

    async def mirror_with_aiohttp(self, green: replicas.Destination, copy: "Copy") -> tuple[int, bytes]:
        assert self.mirror_session is not None
        url = yarl.URL(green.endpoint_url.rstrip("/") + copy.target, encoded=True)
        async with self.mirror_session.request(copy.method, url, data=copy.body, headers=copy.headers,
                                               allow_redirects=False) as response:  # fmt: skip
            limit = self.shadow_max_answer
            body = await response.content.read(limit + 1)
            while len(body) <= limit and not response.content.at_eof():
                more = await response.content.read(limit + 1 - len(body))
                if not more:
                    break
                body += more
            return response.status, body

    async def send_copy(self, name: str, green: replicas.Destination, comparer: Comparer, copy: "Copy",
                        blue: Answer) -> None:  # fmt: skip
        """Send the copy, compare, count: exactly one of agreed, disagreed, green_error (cancelled: a green error)."""
        assert self.mirror_session is not None and self.mirror_client is not None
        try:
            await self.behind_callers()
            if copy.method != "HEAD" and self.mirror_client.supports(green.endpoint_url):
                status, body = await self.mirror_client.request(green.endpoint_url, copy.method, copy.target,
                                                                copy.headers.items(), copy.body)  # fmt: skip
            else:  # TLS, or an answer without a body whatever its headers say: the general client
                status, body = await self.mirror_with_aiohttp(green, copy)
        except asyncio.CancelledError:
            self.counts.shadow(name, green, "green_error")
            raise
        except Exception as exc:  # no answer, a timeout, a broken one: green's failure, never the caller's
            log.debug("shadow copy to route %s failed: %s", green.route_id, exc)
            self.counts.shadow(name, green, "green_error")
            return
        if status >= 500:
            self.counts.shadow(name, green, "green_error")
            return
        try:
            await self.behind_callers()
        except asyncio.CancelledError:
            self.counts.shadow(name, green, "green_error")
            raise
        green_answer = Answer(status, body)
        if len(body) <= self.shadow_max_answer and comparer.compare(blue, green_answer).agreed:
            self.counts.shadow(name, green, "agreed")
            return
        sample = traffic.ShadowSample(
            request=traffic.truncated(copy.describe()),
            blue_answer=traffic.truncated(describe_answer(blue)),
            green_answer=traffic.truncated(describe_answer(green_answer)),
        )
        self.counts.shadow(name, green, "disagreed", sample)


@dataclass
class Clock:
    """A request's deadline, and the seconds its first byte of answer may take once the request is written."""

    deadline: asyncio.Timeout
    first_byte: float


async def first_byte_clock(session: aiohttp.ClientSession, context: Any, params: Any) -> None:
    """Once a request's headers are written (its connection is open), the first byte of answer is due within
    `first_byte` s; a body streamed after them moves the deadline as it goes (RequestBody)."""
    clock = context.trace_request_ctx
    clock.deadline.reschedule(asyncio.get_running_loop().time() + clock.first_byte)


class RequestBody:
    """The caller's body as the client library pulls it: a chunk is read only when the replica's connection took
    the one before (back-pressure), and each must come within `idle` seconds."""

    def __init__(self, receive: Receive, idle: float, first_byte: float) -> None:
        self.receive, self.idle, self.first_byte = receive, idle, first_byte
        self.started = self.done = self.gone = False

    async def chunks(self, deadline: asyncio.Timeout) -> AsyncIterator[bytes]:
        self.started = True
        loop = asyncio.get_running_loop()
        while not self.done:
            deadline.reschedule(loop.time() + self.idle)
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.gone = True
                raise CallerGone()
            self.done = not message.get("more_body", False)
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
        # The replica's first byte is now due: its clock starts when the request is complete.
        deadline.reschedule(loop.time() + self.first_byte)


class CallerWatch:
    """Cancels the task streaming an answer when its caller disconnects (the server would otherwise drop what is
    sent and the replica would stream on). Only once the request body was read: until then `receive` gives it."""

    def __init__(self, receive: Receive, body: RequestBody | None) -> None:
        self.receive, self.body = receive, body
        self.gone = False
        self.task: asyncio.Task[None] | None = None

    def __enter__(self) -> "CallerWatch":
        owner = asyncio.current_task()
        if owner is not None and (self.body is None or self.body.done):
            self.task = asyncio.get_running_loop().create_task(self._watch(owner))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.task is not None:
            self.task.cancel()

    async def _watch(self, owner: asyncio.Task[Any]) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass
        self.gone = True
        owner.cancel()


async def read_all(receive: Receive, idle: float) -> bytes:
    """A small body, each part within `idle` seconds (TimeoutError otherwise)."""
    parts = []
    while True:
        async with asyncio.timeout(idle):
            message = await receive()
        if message["type"] == "http.disconnect":
            raise CallerGone()
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


async def send_json(send: Send, status: int, content: dict[str, Any]) -> None:
    body = json.dumps(content).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


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
    timeouts: Timeouts = Timeouts(),
) -> ProxyApp:
    """The proxy app; `app.state.counts` is what it counted (its `flush(db)` writes them now), `app.state.mirrors`
    the shadow copies in flight, `app.state.table` the routing table it serves from. `count=False` forwards without
    counting: only the bench uses it, to measure what counting costs (bench/b_analysis.py). `attempts` bounds the
    routes one request tries to connect to."""
    table = TrafficTable(db, avoid_seconds=timeouts.avoid)
    counts = TrafficCounts(proxy_id)
    forwarder = Forwarder(table, counts, attempts=attempts, count=count, timeouts=timeouts,
                          shadow_timeout=shadow_timeout, shadow_max_body=shadow_max_body,
                          shadow_max_in_flight=shadow_max_in_flight)  # fmt: skip

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "up", "deployments": sorted(table.routes)})

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(counts.registry), media_type=CONTENT_TYPE_LATEST)

    async def refresh_periodically() -> None:
        while True:
            await asyncio.sleep(refresh_seconds)
            table.reload_soon()

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
        await forwarder.start()
        listener = await notifications.listen(url, lambda _: table.reload_soon())
        refresher = asyncio.create_task(refresh_periodically())
        stopping = asyncio.Event()
        flusher = asyncio.create_task(flush_periodically(stopping))
        try:
            yield
        finally:
            refresher.cancel()
            await forwarder.stop()
            stopping.set()
            try:
                await asyncio.wait_for(flusher, timeout=5)
            except TimeoutError:
                log.warning("the last traffic flush did not finish in 5 s: its counts are lost")
            await listener.close()
            if table.reloader is not None:
                table.reloader.cancel()
            await db.disconnect()

    control = Starlette(routes=[Route("/health", health), Route("/metrics", metrics)], lifespan=lifespan)
    control.state.counts = counts
    control.state.mirrors = forwarder.mirrors
    control.state.table = table
    return ProxyApp(control, forwarder)


@dataclass(frozen=True)
class Copy:
    """What a mirrored request carries to green."""

    method: str
    target: str  # path and query
    body: bytes
    headers: "CIMultiDict[str]"

    def describe(self) -> str:
        """For a sample: method, path, query and body, never headers (they may carry credentials)."""
        return f"{self.method} {self.target}\n\n{self.body.decode(errors='replace')}"


def describe_answer(answer: Answer) -> str:
    return f"{answer.status}\n\n{answer.body.decode(errors='replace')}"
