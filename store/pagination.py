"""Relay cursors: opaque to clients, a position in one ordering to the store."""

import base64
import binascii
import re

from store.errors import BadUserInput

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
POSITION = re.compile(r"0|[1-9][0-9]{0,18}")
MAX_POSITION = 2**63 - 1  # positions are bigint columns (or compared as bigint)


def page_size(first: int | None) -> int:
    if first is None:
        return DEFAULT_PAGE_SIZE
    if not 1 <= first <= MAX_PAGE_SIZE:
        raise BadUserInput(f"first must be between 1 and {MAX_PAGE_SIZE}, got {first}")
    return first


def encode_cursor(kind: str, position: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{position}".encode()).decode()


def cursor_sql(kind: str, position: str) -> str:
    """`encode_cursor` as a SQL expression of the column `position`, for statements that build the response in
    PostgreSQL (store/json_reads.py): the same text, from the same place."""
    assert kind.isidentifier(), kind  # written into the statement
    return f"translate(encode(convert_to('{kind}:' || {position}, 'UTF8'), 'base64'), '+/', '-_')"


def decode_cursor(kind: str, cursor: str | None, default: int) -> int:
    """The position a cursor names; `default` (the start of the ordering) when there is none. Only what
    `encode_cursor` writes is taken: digits without sign, spaces or leading zeros, within PostgreSQL's bigint."""
    if cursor is None:
        return default
    try:
        found_kind, _, position = base64.urlsafe_b64decode(cursor.encode()).decode("ascii").partition(":")
    except (binascii.Error, UnicodeError, ValueError):
        found_kind, position = "", ""
    if found_kind == kind and POSITION.fullmatch(position) and int(position) <= MAX_POSITION:
        return int(position)
    raise BadUserInput(f"after {cursor[:80]!r} is not a {kind} cursor: pass an endCursor from a previous page")
