"""One place where failures become GraphQL errors with an `extensions.code` (Apollo Server's codes)."""

import logging
from typing import Any

import asyncpg
from graphql import GraphQLError

from store.errors import StoreError

log = logging.getLogger("switchover.graphql")

# The database could not answer: the request may succeed when retried.
UNAVAILABLE_ERRORS = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.QueryCanceledError,
    asyncpg.AdminShutdownError,
)


def _original(error: GraphQLError) -> BaseException | None:
    original: BaseException | None = error.original_error
    while isinstance(original, GraphQLError) and original.original_error is not None:
        original = original.original_error
    return None if isinstance(original, GraphQLError) else original


def classify(error: GraphQLError) -> tuple[str, str]:
    """The `extensions.code` and the message a client may see."""
    original = _original(error)
    if isinstance(original, StoreError):
        return original.code, original.message
    if isinstance(original, UNAVAILABLE_ERRORS):
        return "UNAVAILABLE", "the database is unavailable right now; try again shortly"
    if original is not None:
        return "INTERNAL_SERVER_ERROR", "internal server error; the server log has the details"
    if error.path is not None:
        # Raised by graphql-core while executing (e.g. a value that does not fit its type).
        return "INTERNAL_SERVER_ERROR", error.message
    if error.message.startswith("Syntax Error"):
        return "GRAPHQL_PARSE_FAILED", error.message
    if error.message.startswith("Variable '$"):
        return "BAD_USER_INPUT", error.message
    return "GRAPHQL_VALIDATION_FAILED", error.message


def format_error(error: GraphQLError, debug: bool = False) -> dict[str, Any]:
    code, message = classify(error)
    formatted: dict[str, Any] = dict(error.formatted)
    formatted["message"] = message
    extensions = {k: v for k, v in formatted.get("extensions", {}).items() if k not in ("exception", "stacktrace")}
    extensions["code"] = code
    formatted["extensions"] = extensions
    return formatted


class ErrorLog(logging.LoggerAdapter):
    """Ariadne logs every error with a traceback; only unexpected ones deserve that."""

    def error(self, msg: object, *args: object, exc_info: Any = None, **kwargs: Any) -> None:
        if isinstance(exc_info, GraphQLError):
            code, _ = classify(exc_info)
            if code in ("INTERNAL_SERVER_ERROR",):
                self.logger.error("unexpected error: %s", msg, exc_info=exc_info)
            elif code == "UNAVAILABLE":
                self.logger.warning("database unavailable: %s", _original(exc_info))
            else:
                self.logger.debug("refused: %s (%s)", msg, code)
            return
        self.logger.error(msg, *args, exc_info=exc_info, **kwargs)


error_log = ErrorLog(log, {})
