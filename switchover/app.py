"""The Starlette application: GraphQL, health, readiness."""

import contextlib
import hmac
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any

from ariadne.asgi import GraphQL
from ariadne.asgi.handlers import GraphQLHTTPHandler
from databases import Database
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from resolvers import make_schema
from resolvers.context import Context
from resolvers.errors import error_log, format_error
from store.database import check_schema
from switchover.settings import Settings


class HTTPHandler(GraphQLHTTPHandler):
    async def create_json_response(self, request: Request, result: dict, success: bool) -> Response:
        # Execution happened (`data` present, even null): 200, so gateways pass `extensions.code` on.
        # Parse and validation failures keep 400.
        status = HTTPStatus.OK if "data" in result else HTTPStatus.BAD_REQUEST
        return JSONResponse(result, status_code=status)


class RouterOnly:
    """Refuse requests that did not come through the router: it adds the shared secret, clients do not know it.

    (An ASGI class, not a function: Starlette routes treat plain functions as request handlers.)
    """

    def __init__(self, app: ASGIApp, secret: str) -> None:
        self.app = app
        self.expected = secret.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        given = Headers(scope=scope).get("router-secret", "").encode()
        if scope["type"] == "http" and not hmac.compare_digest(given, self.expected):
            refusal = {
                "errors": [
                    {
                        "message": "this subgraph answers only through the router (missing or wrong router-secret)",
                        "extensions": {"code": "FORBIDDEN"},
                    }
                ]
            }
            await JSONResponse(refusal, status_code=HTTPStatus.FORBIDDEN)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(settings: Settings, db: Database) -> Starlette:
    async def context_for_request(request: Request, data: Any) -> Context:
        return Context(db=db, actor="anonymous")

    graphql = GraphQL(
        make_schema(),
        context_value=context_for_request,
        error_formatter=format_error,
        logger=error_log,  # type: ignore[arg-type]
        introspection=settings.introspection,
        debug=False,
        http_handler=HTTPHandler(),
        execute_get_queries=True,
    )

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
            Route(
                "/graphql",
                RouterOnly(graphql, settings.router_secret) if settings.router_secret else graphql,
                methods=["GET", "POST"],
            ),
            Route("/health", health),
            Route("/ready", ready),
        ],
        lifespan=lifespan,
    )
