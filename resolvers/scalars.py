"""The DateTime and JSON scalars."""

from datetime import datetime
from typing import Any

from ariadne import ScalarType

from store.errors import BadUserInput

datetime_scalar = ScalarType("DateTime")
json_scalar = ScalarType("JSON")


@datetime_scalar.serializer
def serialize_datetime(value: datetime) -> str:
    return value.isoformat()


@datetime_scalar.value_parser
def parse_datetime(value: Any) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise BadUserInput(f"{value!r} is not an ISO-8601 date-time") from None
    if parsed.tzinfo is None:
        raise BadUserInput(f"{value!r} has no UTC offset; add one, e.g. +00:00")
    return parsed


@json_scalar.serializer
def serialize_json(value: Any) -> Any:
    return value


@json_scalar.value_parser
def parse_json(value: Any) -> Any:
    return value
