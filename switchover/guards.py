"""ASGI guards in front of /graphql: the router secret and the request body size.

(ASGI classes, not functions: Starlette routes treat plain functions as request handlers.)
"""

import hmac
from http import HTTPStatus

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def refusal(message: str, code: str, status: int) -> JSONResponse:
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": code}}]}, status_code=status)


class RouterOnly:
    """Refuse requests that did not come through the router: it adds the shared secret, clients do not know it."""

    def __init__(self, app: ASGIApp, secret: str) -> None:
        self.app = app
        self.expected = secret.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        given = Headers(scope=scope).get("router-secret", "").encode()
        if scope["type"] == "websocket" and not hmac.compare_digest(given, self.expected):
            await send({"type": "websocket.close", "code": 4403, "reason": "router-secret missing or wrong"})
            return
        if scope["type"] == "http" and not hmac.compare_digest(given, self.expected):
            response = refusal(
                "this subgraph answers only through the router (missing or wrong router-secret)",
                "FORBIDDEN",
                HTTPStatus.FORBIDDEN,
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """Refuse request bodies over `max_bytes`, whether or not they announce their length."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = refusal(
            f"the request body is larger than {self.max_bytes} bytes",
            "BAD_USER_INPUT",
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        )
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await too_large(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await too_large(scope, receive, send)
