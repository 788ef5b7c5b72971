"""OpenTelemetry tracing: on when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set,
exported over OTLP/HTTP with the standard `OTEL_*` variables; off otherwise.

Off means nothing at all: no tracer provider is installed, asyncpg is not instrumented, and every helper here hands
back what it was given (the app, the parser) or None (the extensions, the tracer), so the request path runs exactly
the code it runs without this module.

On, a process gets:
- an HTTP server span per request, continuing the W3C `traceparent` a router or a client sent
  (`opentelemetry-instrumentation-asgi`);
- under it, for GraphQL, an operation span named `query Deployments` (`graphql.operation.type` / `.name`), with a
  span per resolver written as a coroutine (Ariadne's OpenTelemetry extension) and the SQL statements under them
  (`opentelemetry-instrumentation-asyncpg`, which sees the store's statements: they run on asyncpg connections);
- in the scheduler, one span per claimed deployment (`scheduler/runner.py`).
"""

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from inspect import iscoroutinefunction
from typing import Any

from ariadne.contrib.tracing.opentelemetry import OpenTelemetryExtension
from ariadne.contrib.tracing.utils import should_trace
from ariadne.types import ContextValue, Extension, Resolver
from graphql import DocumentNode, GraphQLResolveInfo, get_operation_ast
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, Span, SpanKind, Tracer
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes
from starlette.types import ASGIApp

from store.models import Deployment

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
INSTRUMENTATION = "switchover"

_configured: TracerProvider | None = None  # the process's provider, once `configure` made it
# Set once `server` traced an app: until then no request can have a span, so `inject` (on the proxy's path for
# every request) costs one read of this instead of a context lookup.
_serving = False


def enabled(environ: Mapping[str, str] = os.environ) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(environ.get(name) for name in ENDPOINT_VARIABLES)


def configure(service_name: str, environ: Mapping[str, str] = os.environ) -> TracerProvider | None:
    """The process's tracer provider, exporting over OTLP/HTTP, installed as the global one with asyncpg
    instrumented; None, and nothing installed, when tracing is off. Made once per process (the global provider can
    be set only once): later calls return the first one.

    `service_name` is the default `service.name`; `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` win over it."""
    global _configured
    if _configured is not None or not enabled(environ):
        return _configured
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # only paid for when on

    named = environ.get("OTEL_SERVICE_NAME") or "service.name=" in environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    resource = Resource.create({} if named else {SERVICE_NAME: service_name})
    provider = new_provider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # endpoint, headers, timeout: OTEL_* vars
    trace.set_tracer_provider(provider)
    instrument_sql(provider)
    _configured = provider
    return provider


def new_provider(*, resource: Resource | None = None) -> TracerProvider:
    """A provider with the sampler `OTEL_TRACES_SAMPLER` names (default: parent-based, always on), less lone SQL."""
    named_by_environment = TracerProvider(shutdown_on_exit=False).sampler  # how the SDK reads OTEL_TRACES_SAMPLER
    return TracerProvider(resource=resource or Resource.create(), sampler=NoLoneQueries(named_by_environment))


class NoLoneQueries(Sampler):
    """Drops a SQL span that would start a trace of its own: the scheduler's polls that claim nothing, the health
    checker's and the runtime's passes, readiness probes. A trace per idle poll would bury the ones that matter;
    SQL inside an operation or a scheduler step is kept (it has a parent)."""

    def __init__(self, inner: Sampler) -> None:
        self.inner = inner

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        lone = not trace.get_current_span(parent_context).get_span_context().is_valid
        query = attributes is not None and ("db.system" in attributes or "db.system.name" in attributes)
        if lone and query and kind is SpanKind.CLIENT:
            return SamplingResult(Decision.DROP)
        return self.inner.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"NoLoneQueries{{{self.inner.get_description()}}}"


def instrument_sql(provider: TracerProvider) -> None:
    """Spans for the statements sent on asyncpg connections, the store's included (process-wide)."""
    AsyncPGInstrumentor().instrument(tracer_provider=provider)


def uninstrument_sql() -> None:
    AsyncPGInstrumentor().uninstrument()


def server(app: ASGIApp, provider: TracerProvider | None) -> ASGIApp:
    """`app` with an HTTP server span per request, continuing the caller's `traceparent`; `app` itself when off.
    The per-message `send`/`receive` spans are left out: a response has a few of them and they say nothing."""
    global _serving
    if provider is None:
        return app
    _serving = True
    return OpenTelemetryMiddleware(app, tracer_provider=provider, exclude_spans=["receive", "send"],
                                   server_request_hook=without_query)  # fmt: skip


def without_query(span: Span, scope: dict[str, Any]) -> None:
    """A request's span keeps its path, not its query: inference calls put API keys and tokens there."""
    attributes = getattr(span, "attributes", None) or {}
    for key in ("http.url", "http.target", "url.full"):
        value = attributes.get(key)
        if isinstance(value, str) and "?" in value:
            span.set_attribute(key, value.partition("?")[0])
    if attributes.get("url.query"):
        span.set_attribute("url.query", "")


def traced(app: ASGIApp, service_name: str) -> ASGIApp:
    """`app` traced when the environment turns tracing on (`server` with the process's provider); for the proxy:
    `proxy = tracing.traced(create_proxy(...), "switchover-proxy")`."""
    return server(app, configure(service_name))


def inject(headers: MutableMapping[str, str]) -> None:
    """The current span's `traceparent` into the headers of an outgoing request (the proxy's, to a replica), in
    place of the caller's: the replica's spans then hang under the proxy's. Nothing unless a span is recording; with
    tracing off (no app traced), a single flag read."""
    if _serving and trace.get_current_span().is_recording():
        propagate.inject(headers)


def tracer(provider: TracerProvider | None) -> Tracer | None:
    return None if provider is None else provider.get_tracer(INSTRUMENTATION)


class OperationExtension(OpenTelemetryExtension):
    """Ariadne's extension, with its operation span made the current one (so that SQL sent outside resolvers, as
    the planned reads do, lands under it) and spans only for resolvers written as coroutines: those are the ones
    that wait on the database. Synchronous resolvers (record attributes, computed fields) and default resolvers
    would add two spans for every item of every list, and say nothing."""

    _token: object | None = None

    def request_started(self, context: ContextValue) -> None:
        super().request_started(context)
        self._token = otel_context.attach(trace.set_span_in_context(self._root_span))

    def request_finished(self, context: ContextValue) -> None:
        if self._token is not None:
            otel_context.detach(self._token)  # type: ignore[arg-type]
        super().request_finished(context)

    def resolve(self, next_: Resolver, obj: Any, info: GraphQLResolveInfo, **kwargs: Any) -> Any:
        field = info.parent_type.fields.get(info.field_name)
        if field is None or not iscoroutinefunction(field.resolve) or not should_trace(info):
            return next_(obj, info, **kwargs)
        return super().resolve(next_, obj, info, **kwargs)


def identifying_arguments(arguments: dict[str, Any], info: GraphQLResolveInfo) -> dict[str, Any]:
    """The arguments a resolver span records: ids and page sizes only. Inputs are never recorded: they carry
    webhook secrets, revision environments and free text."""
    return {
        name: value
        for name, value in arguments.items()
        if (name == "id" or name.endswith("_id") or name == "first") and isinstance(value, str | int)
    }


def extensions(provider: TracerProvider | None) -> list[Callable[[], Extension]] | None:
    """Ariadne extensions for the HTTP handler: the operation span and resolver spans; None when off."""
    if provider is None:
        return None
    operation_tracer = provider.get_tracer("ariadne")
    return [lambda: OperationExtension(tracer=operation_tracer, arg_filter=identifying_arguments)]


QueryParser = Callable[[ContextValue, dict[str, Any]], DocumentNode]


def named_operations(parse: QueryParser, provider: TracerProvider | None) -> QueryParser:
    """`parse`, also naming the current operation span after the operation it parsed (`mutation Promote`), as
    OpenTelemetry's GraphQL conventions do; `parse` itself when off. Ariadne calls the parser inside the
    extension's request, so the current span is the operation span."""
    if provider is None:
        return parse

    def parse_and_name(context: ContextValue, data: dict[str, Any]) -> DocumentNode:
        document = parse(context, data)
        operation = get_operation_ast(document, data.get("operationName"))
        span = trace.get_current_span()
        if operation is not None and span.is_recording():
            kind = operation.operation.value
            span.set_attribute("graphql.operation.type", kind)
            if operation.name is not None:
                span.set_attribute("graphql.operation.name", operation.name.value)
            span.update_name(f"{kind} {operation.name.value}" if operation.name else kind)
        return document

    return parse_and_name


@contextlib.contextmanager
def deployment_step(step_tracer: Tracer | None, deployment: Deployment) -> Iterator[None]:
    """The span of one scheduler step on one claimed deployment (current, so its SQL lands under it); nothing when
    tracing is off."""
    if step_tracer is None:
        yield
        return
    attributes = {
        "switchover.deployment.id": deployment.id,
        "switchover.deployment.name": deployment.name,
        "switchover.deployment.lifecycle": deployment.lifecycle.value,
    }
    if deployment.sub_step is not None:
        attributes["switchover.deployment.sub_step"] = deployment.sub_step.value
    with step_tracer.start_as_current_span("scheduler.step", attributes=attributes):
        yield
