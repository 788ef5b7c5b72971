"""Relay cursors: opaque to clients, a position in one ordering to the store."""

import base64
import binascii

from store.errors import BadUserInput

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


def page_size(first: int | None) -> int:
    if first is None:
        return DEFAULT_PAGE_SIZE
    if not 1 <= first <= MAX_PAGE_SIZE:
        raise BadUserInput(f"first must be between 1 and {MAX_PAGE_SIZE}, got {first}")
    return first


def encode_cursor(kind: str, position: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{position}".encode()).decode()


def decode_cursor(kind: str, cursor: str | None, default: int) -> int:
    """The position a cursor names; `default` (the start of the ordering) when there is none."""
    if cursor is None:
        return default
    try:
        found_kind, position = base64.urlsafe_b64decode(cursor.encode()).decode().split(":")
        if found_kind == kind:
            return int(position)
    except (binascii.Error, UnicodeError, ValueError):
        pass
    raise BadUserInput(f"after {cursor[:80]!r} is not a {kind} cursor: pass an endCursor from a previous page")
