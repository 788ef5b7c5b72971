"""Why the store refused an operation. Each error carries the GraphQL `extensions.code` it is reported with."""


class StoreError(Exception):
    """An operation was refused; nothing was written."""

    code = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadUserInput(StoreError):
    code = "BAD_USER_INPUT"


class NotFound(StoreError):
    code = "NOT_FOUND"


class InvalidState(StoreError):
    code = "INVALID_STATE"


class Conflict(StoreError):
    code = "CONFLICT"


class Unavailable(StoreError):
    """The database cannot be reached."""

    code = "UNAVAILABLE"


class SchemaOutOfDate(Exception):
    """The database schema is older (or newer) than this code expects."""
