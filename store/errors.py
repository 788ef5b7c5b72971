"""Why an operation was refused. Each error carries the GraphQL `extensions.code` it is reported with."""


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


def does_not_exist(kind: str, id_: str) -> NotFound:
    """The one answer for an id that finds nothing, also given for a record the caller may not read."""
    return NotFound(f"{kind} {id_} does not exist")


class InvalidState(StoreError):
    code = "INVALID_STATE"


class Conflict(StoreError):
    code = "CONFLICT"


class SchemaOutOfDate(Exception):
    """The database schema is older (or newer) than this code expects."""


class Unauthenticated(StoreError):
    """No valid credentials: a missing, malformed, expired or wrongly signed token."""

    code = "UNAUTHENTICATED"


class Forbidden(StoreError):
    """Valid credentials that do not allow this."""

    code = "FORBIDDEN"


class Frozen(StoreError):
    """A freeze window of the project is in force: deploys and promotions wait for its end (or an admin's
    break-glass)."""

    code = "FROZEN"
