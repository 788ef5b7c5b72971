"""OpenTelemetry tracing: GraphQL operations continue the caller's trace with resolver and SQL spans under them, the
scheduler makes one span per claimed deployment, `switchover proxy` continues the caller's trace and hands its own
span on to the replica, a trace started by `@apollo/gateway` continues into the subgraph's spans over real OTLP
export, and with no OTEL_* setting nothing of it is installed."""

import asyncio
import gzip
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from scheduler.runner import run_once
from store import route_health
from store.database import open_database
from store.models import RouteStatus
from switchover import tracing
from switchover.app import create_app
from switchover.settings import Settings
from tests import tokens
from tests.conftest import create_database, drop_database, url_of
from tests.dataplanes import builtin_proxy
from tests.graphql import CREATE, data, deployment_input
from tests.live_server import serving
from tests.scenario import Scenario, blue_green

ROOT = Path(__file__).resolve().parent.parent
FEDERATION = ROOT / "federation"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN_ID}-01"
DEPLOY = """
mutation Deploy($d: ID!, $r: ID!) { deployRevision(input: {deploymentId: $d, revisionId: $r}) { deployment { id } } }
"""


@dataclass
class Traces:
    provider: TracerProvider
    exporter: InMemorySpanExporter

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name == name]

    def ancestors(self, span: ReadableSpan) -> list[ReadableSpan]:
        by_id = {s.context.span_id: s for s in self.spans()}
        chain: list[ReadableSpan] = []
        while span.parent is not None and span.parent.span_id in by_id:
            span = by_id[span.parent.span_id]
            chain.append(span)
        return chain


@pytest.fixture
def traces() -> Iterator[Traces]:
    """A provider of the test's own (the global one is left alone), exporting to memory, with asyncpg's statements
    instrumented for the test's duration."""
    provider = tracing.new_provider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.instrument_sql(provider)
    try:
        yield Traces(provider, exporter)
    finally:
        tracing.uninstrument_sql()
        provider.shutdown()


@pytest.fixture
async def traced_client(settings: Settings, db: Any, traces: Traces) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, db, tracer_provider=traces.provider)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://switchover") as c:
        yield c


def hex_trace_id(span: ReadableSpan) -> str:
    return format(span.context.trace_id, "032x")


async def test_a_graphql_operation_continues_the_callers_trace_with_resolver_and_sql_spans_under_it(
    traced_client: httpx.AsyncClient, traces: Traces
) -> None:
    response = await traced_client.post(
        "/graphql",
        json={"query": CREATE, "variables": {"input": deployment_input("3f0a2a8e-3f57-4d0c-9a4e-64a9b7d8a1c1")}},
        headers={"traceparent": TRACEPARENT},
    )

    assert response.status_code == 200 and "errors" not in response.json(), response.json()
    [operation] = traces.named("mutation Create")
    assert hex_trace_id(operation) == TRACE_ID
    assert operation.attributes is not None
    assert operation.attributes["graphql.operation.type"] == "mutation"
    assert operation.attributes["graphql.operation.name"] == "Create"
    [http] = traces.ancestors(operation)  # the HTTP server span, child of the caller's span
    assert http.kind is SpanKind.SERVER and http.parent is not None
    assert format(http.parent.span_id, "016x") == CALLER_SPAN_ID and http.parent.is_remote
    [resolver] = traces.named("createDeployment")
    assert operation in traces.ancestors(resolver)
    assert resolver.attributes is not None and "graphql.arg[input]" not in resolver.attributes  # inputs hold secrets
    statements = [s for s in traces.spans() if s.kind is SpanKind.CLIENT]
    inserts = [s for s in statements if s.name == "INSERT"]
    assert inserts, [s.name for s in statements]
    assert all(resolver in traces.ancestors(s) for s in inserts)
    assert all(hex_trace_id(s) == TRACE_ID for s in traces.spans())


async def test_a_planned_read_has_its_sql_under_the_operation_span(
    traced_client: httpx.AsyncClient, traces: Traces
) -> None:
    await traced_client.post(
        "/graphql",
        json={"query": "query Page { deployments(first: 5) { edges { node { id name } } } }"},
        headers={"traceparent": TRACEPARENT},
    )

    [operation] = traces.named("query Page")
    statements = [s for s in traces.spans() if s.kind is SpanKind.CLIENT]
    assert statements
    assert all(operation in traces.ancestors(s) for s in statements)


async def test_a_scheduler_pass_makes_one_span_per_claimed_deployment(db: Any, traces: Traces) -> None:
    deployed = []
    for _ in range(2):
        scenario = await Scenario(db).given_deployment()
        await scenario.deploy()
        deployed.append(scenario.id)

    steps = await run_once(db, tracer=tracing.tracer(traces.provider))

    step_spans = traces.named("scheduler.step")
    assert steps == 2
    assert sorted(str((s.attributes or {})["switchover.deployment.id"]) for s in step_spans) == sorted(deployed)
    assert len({s.context.trace_id for s in step_spans}) == 2  # each step a trace of its own
    # The statements of each step are under its span; the polls that claimed nothing made no trace at all.
    roots = [s for s in traces.spans() if s.parent is None]
    assert roots and all(s.name == "scheduler.step" for s in roots)
    for span in step_spans:
        assert any(span in traces.ancestors(s) for s in traces.spans() if s.name == "INSERT")


async def test_the_proxy_helper_traces_each_request_and_continues_the_callers_trace(traces: Traces) -> None:
    forwarded: dict[str, str] = {}

    async def hello(request: Request) -> PlainTextResponse:
        tracing.inject(forwarded)  # what the proxy sends on to a replica
        return PlainTextResponse("hello")

    app = tracing.server(Starlette(routes=[Route("/{path:path}", hello)]), traces.provider)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as client:
        response = await client.get("/ranker/predict", headers={"traceparent": TRACEPARENT})

    assert response.text == "hello"
    [span] = traces.spans()
    assert span.kind is SpanKind.SERVER and hex_trace_id(span) == TRACE_ID
    assert span.attributes is not None and span.attributes.get("http.status_code", 200) == 200
    assert forwarded["traceparent"] == f"00-{TRACE_ID}-{span.context.span_id:016x}-01"  # under the proxy's span


async def test_without_otel_settings_nothing_of_tracing_is_installed(
    settings: Settings, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)

    app = create_app(settings, db)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://switchover") as client:
        assert await data(client, "{ deployments(first: 1) { edges { cursor } } }")

    assert tracing.configure("switchover") is None
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)  # the API's no-op proxy
    assert not AsyncPGInstrumentor().is_instrumented_by_opentelemetry
    graphql_route = next(r for r in app.routes if getattr(r, "path", None) == "/graphql")
    assert not isinstance(getattr(graphql_route, "app", None), OpenTelemetryMiddleware)
    assert tracing.server(app, None) is app and tracing.extensions(None) is None and tracing.tracer(None) is None
    headers: dict[str, str] = {}
    tracing.inject(headers)
    assert headers == {}


# --- through @apollo/gateway, exported over OTLP by both processes -------------------------------------------------


class Collector:
    """An OTLP/HTTP trace receiver (protobuf, what both the Python and the JavaScript exporters send)."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.body()
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                collector.receive(body)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def body(self) -> bytes:
                if self.headers.get("transfer-encoding") != "chunked":  # Node's exporter streams its body
                    return self.rfile.read(int(self.headers.get("content-length", 0)))
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def receive(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        received = []
        for resource_spans in request.resource_spans:
            service = next(
                (a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"), ""
            )
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append({
                        "service": service,
                        "name": span.name,
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "attributes": {a.key: a.value.string_value for a in span.attributes},
                    })  # fmt: skip
        with self.lock:
            self.spans.extend(received)

    def received(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.spans)

    def __enter__(self) -> "Collector":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen[bytes], headers: dict[str, str]) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, f"{process.args} exited with {process.returncode}"
        try:
            if httpx.post(url, json={"query": "{ __typename }"}, headers=headers, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} not ready in 60 s"
        time.sleep(0.1)


@pytest.mark.skipif(
    not (FEDERATION / "node_modules" / "@opentelemetry" / "sdk-trace-node").exists() or shutil.which("node") is None,
    reason="needs Node.js and `npm ci` in federation/",
)
def test_the_gateways_trace_continues_into_the_subgraphs_spans(template_database: str, tmp_path: Path) -> None:
    database = create_database(template=template_database)
    subgraph_port, gateway_port = free_port(), free_port()
    supergraph = (ROOT / "supergraph.graphql").read_text()
    supergraph = supergraph.replace("http://127.0.0.1:8000/graphql", f"http://127.0.0.1:{subgraph_port}/graphql")
    (tmp_path / "supergraph.graphql").write_text(supergraph)
    secret = "a-router-secret-for-tracing-tests"
    with Collector() as collector, (tmp_path / "processes.log").open("ab") as log:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
            "DATABASE_URL": url_of(database),
            "SWITCHOVER_ROUTER_SECRET": secret,
            "ROUTER_SECRET": secret,
            "SWITCHOVER_JWT_SECRET": tokens.SECRET,
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # milliseconds, for both SDKs: spans arrive while the test waits
        }
        processes = [
            subprocess.Popen([sys.executable, "-m", "switchover", "serve", "--port", str(subgraph_port)],
                             env=env, stdout=log, stderr=log),
            subprocess.Popen(["node", str(FEDERATION / "apollo-gateway.mjs"), str(tmp_path / "supergraph.graphql"),
                              str(gateway_port)], env=env, stdout=log, stderr=log, cwd=FEDERATION),
        ]  # fmt: skip
        try:
            wait_until_up(f"http://127.0.0.1:{subgraph_port}/graphql", processes[0], {"router-secret": secret})
            wait_until_up(f"http://127.0.0.1:{gateway_port}/graphql", processes[1], {})

            response = httpx.post(
                f"http://127.0.0.1:{gateway_port}/graphql",
                json={"query": "query Listing { deployments(first: 3) { edges { node { id name } } } }"},
                headers=tokens.bearer("tracing-test", roles=["admin"]),
                timeout=30,
            )
            assert response.status_code == 200 and "errors" not in response.json(), response.json()

            deadline = time.monotonic() + 30
            while True:
                spans = collector.received()
                fetches = [s for s in spans if s["name"] == "gateway.fetch"]
                operations = [
                    s for s in spans if s["name"].startswith("query Listing") and s["service"] == "switchover"
                ]
                if fetches and operations:
                    break
                assert time.monotonic() < deadline, sorted({(s["service"], s["name"]) for s in spans})
                time.sleep(0.05)
        finally:
            for p in processes:
                p.terminate()
            for p in processes:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
            drop_database(database)

    [fetch] = fetches
    [operation] = operations
    assert operation["trace_id"] == fetch["trace_id"]  # the gateway's trace, continued by the subgraph
    by_id = {s["span_id"]: s for s in spans}
    http = by_id[operation["parent_span_id"]]
    assert http["service"] == "switchover" and http["parent_span_id"] == fetch["span_id"]
    sql = [s for s in spans if s["service"] == "switchover" and s["trace_id"] == fetch["trace_id"]
           and s["parent_span_id"] == operation["span_id"]]  # fmt: skip
    assert sql, spans


async def due_deployment(url: str) -> str:
    db = open_database(url, max_size=2)
    await db.connect()
    try:
        scenario = await Scenario(db).given_deployment()
        await scenario.deploy()
        return scenario.id
    finally:
        await db.disconnect()


def test_the_scheduler_process_exports_a_span_per_claimed_deployment(database_url: str) -> None:
    deployment_id = asyncio.run(due_deployment(database_url))
    with Collector() as collector:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
            "DATABASE_URL": database_url,
            "SWITCHOVER_RUNTIME": "external",
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        scheduler = subprocess.Popen([sys.executable, "-m", "switchover", "scheduler"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while not (steps := [s for s in collector.received() if s["name"] == "scheduler.step"]):
                assert scheduler.poll() is None, "the scheduler exited"
                assert time.monotonic() < deadline, collector.received()
                time.sleep(0.05)
        finally:
            scheduler.terminate()
            scheduler.wait(timeout=20)

    assert steps[0]["service"] == "switchover-scheduler"
    assert steps[0]["attributes"]["switchover.deployment.id"] == deployment_id
    assert all(s["parent_span_id"] for s in collector.received() if s["name"] != "scheduler.step")  # no lone SQL


def replica_answering_its_traceparent() -> Starlette:
    async def answer(request: Request) -> JSONResponse:
        return JSONResponse({"traceparent": request.headers.get("traceparent")})

    return Starlette(routes=[Route("/{rest:path}", answer, methods=["GET", "POST"])])


async def test_the_proxy_process_continues_the_callers_trace_and_the_replica_continues_the_proxys_span(
    scenario: Scenario, database_url: str
) -> None:
    await scenario.given_deployment(replicas=1, strategy=blue_green())
    name = (await scenario.deployment()).name
    await scenario.deploy()
    await scenario.tick()
    with Collector() as collector:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
        async with (
            serving(replica_answering_its_traceparent()) as replica,
            builtin_proxy(database_url, env=env) as plane,
            httpx.AsyncClient(timeout=10) as client,
        ):
            [route] = await scenario.live_routes(revision=1)
            await route_health.report_route_health(scenario.db, route.id, RouteStatus.HEALTHY, endpoint_url=replica,
                                                   actor="orchestrator")  # fmt: skip
            await scenario.tick()
            assert await scenario.state() == "READY"
            url = f"{plane.url_for(name)}/v1/predict"
            deadline = time.monotonic() + 10
            while (await client.post(url, content=b"x")).status_code != 200:  # until the proxy follows the change
                assert time.monotonic() < deadline

            answer = await client.post(f"{url}?token=do-not-trace", content=b"x", headers={"traceparent": TRACEPARENT})

            deadline = time.monotonic() + 30
            while not (proxy_spans := [s for s in collector.received() if s["trace_id"] == TRACE_ID]):
                assert time.monotonic() < deadline, collector.received()
                await asyncio.sleep(0.05)

    assert answer.status_code == 200
    [span] = proxy_spans  # the proxy's server span, child of the caller's
    assert span["service"] == "switchover-proxy" and span["parent_span_id"] == CALLER_SPAN_ID
    assert answer.json()["traceparent"] == f"00-{TRACE_ID}-{span['span_id']}-01"
    assert "do-not-trace" not in str(span["attributes"])  # query strings carry credentials
