"""The Starlette application: GraphQL (with its guards and limits), health, readiness, metrics, the dashboard."""

import contextlib
from collections.abc import AsyncIterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import orjson
from ariadne.asgi import GraphQL
from ariadne.asgi.handlers import GraphQLHTTPHandler, GraphQLTransportWSHandler
from databases import Database
from opentelemetry.sdk.trace import TracerProvider
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp
from starlette.websockets import WebSocket

from resolvers import make_schema
from resolvers.auth import ANONYMOUS, Principal, principal_from, require_authentication
from resolvers.context import Context
from resolvers.documents import DocumentCache
from resolvers.errors import error_log, format_error
from resolvers.limits import validation_rules
from resolvers.planner import PlannedExecutor
from store.database import check_schema
from store.errors import Unauthenticated
from switchover.guards import BodyLimit, RouterOnly
from switchover.metrics import Measured, metrics
from switchover.settings import Settings
from switchover.tracing import configure, extensions, named_operations, server

NOBODY = Principal("unauthenticated", frozenset(), frozenset())
CONNECTION_PARAMS = "switchover.connection_params"

# The dashboard: static files shipped in the package (package-data), no build step.
UI_DIR = Path(__file__).parent / "ui"
UI_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


async def dashboard(request: Request) -> Response:
    return FileResponse(UI_DIR / "index.html", headers=UI_HEADERS)


class HTTPHandler(GraphQLHTTPHandler):
    async def create_json_response(self, request: Request, result: dict, success: bool) -> Response:
        # Execution happened (`data` present, even null): 200, so gateways pass `extensions.code` on.
        # Parse and validation failures keep 400.
        status = HTTPStatus.OK if "data" in result else HTTPStatus.BAD_REQUEST
        # orjson: serialising a page of 100 deployments is a visible part of its time with the stdlib encoder.
        return Response(orjson.dumps(result), status_code=status, media_type="application/json")


def create_app(settings: Settings, db: Database, *, tracer_provider: TracerProvider | None = None) -> Starlette:
    """The app; traced with `tracer_provider`, or else as the OTEL_* environment says (off unless an OTLP endpoint
    is set: then nothing of tracing is wired in)."""
    if settings.jwt_secret is None and not settings.insecure:
        raise SystemExit(
            "switchover: SWITCHOVER_JWT_SECRET is not set. Set it to require signed tokens, or pass --insecure to "
            "let every caller act as admin (for a laptop, never for production)"
        )
    secret = settings.jwt_secret
    if secret is not None and len(secret.encode()) < 32:
        raise SystemExit("switchover: SWITCHOVER_JWT_SECRET must be at least 32 bytes (RFC 7518 for HS256)")

    prometheus = settings.prometheus_url is not None
    loopback = settings.allow_loopback_urls  # webhook URLs naming loopback are refused at creation unless allowed
    tracer_provider = tracer_provider or configure("switchover")

    async def context_for_request(request: Request | WebSocket, data: Any) -> Context:
        plain_json = isinstance(request, Request)
        if secret is None:
            return Context(db=db, principal=ANONYMOUS, plain_json=plain_json, prometheus=prometheus,
                           allow_loopback_urls=loopback)
        # Over a websocket the token may also come in the connection_init payload (browsers cannot set headers).
        params = request.scope.get(CONNECTION_PARAMS) or {}
        authorization = (
            request.headers.get("authorization") or params.get("authorization") or params.get("Authorization")
        )
        try:
            return Context(db=db, principal=principal_from(authorization, secret), plain_json=plain_json,
                           prometheus=prometheus, allow_loopback_urls=loopback)
        except Unauthenticated as refused:
            return Context(db=db, principal=NOBODY, auth_error=refused, plain_json=plain_json, prometheus=prometheus,
                           allow_loopback_urls=loopback)

    def keep_connection_params(websocket: WebSocket, payload: Any) -> None:
        websocket.scope[CONNECTION_PARAMS] = payload if isinstance(payload, dict) else {}

    documents = DocumentCache()
    graphql: ASGIApp = GraphQL(
        make_schema(max_representations=settings.max_representations),
        context_value=context_for_request,
        error_formatter=format_error,
        logger=error_log,  # type: ignore[arg-type]
        introspection=settings.introspection,
        debug=False,
        http_handler=HTTPHandler(middleware=[require_authentication], extensions=extensions(tracer_provider)),
        websocket_handler=GraphQLTransportWSHandler(on_connect=keep_connection_params),
        execute_get_queries=True,
        validation_rules=validation_rules(max_depth=settings.max_depth, max_cost=settings.max_cost),
        query_parser=named_operations(documents.parse, tracer_provider),
        query_validator=documents.validate,
        execution_context_class=PlannedExecutor,
    )
    graphql = BodyLimit(graphql, settings.max_body_bytes)
    if settings.router_secret:
        graphql = RouterOnly(graphql, settings.router_secret)
    graphql = server(graphql, tracer_provider)  # outermost: refused requests are traced too

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "up"})

    async def ready(request: Request) -> Response:
        try:
            await db.fetch_val("SELECT 1")
        except Exception as exc:  # any failure means not ready; say which
            return JSONResponse({"status": "unavailable", "reason": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ready"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owns_connection = not db.is_connected
        if owns_connection:
            await db.connect()
        try:
            await check_schema(db)
            yield
        finally:
            if owns_connection:
                await db.disconnect()

    return Starlette(
        routes=[
            Route("/graphql", Measured(graphql), methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/health", health),
            Route("/ready", ready),
            Route("/metrics", metrics),
            Route("/", dashboard),
            Route("/ui", dashboard),
            Route("/ui/", dashboard),
            Mount("/ui", StaticFiles(directory=UI_DIR)),
        ],
        lifespan=lifespan,
    )
