"""Comparing blue's and green's answers to one mirrored request (SPEC §6, Shadow traffic). Pure: no I/O.

- `EXACT`: the statuses and the body bytes are equal.
- `JSON`: the statuses are equal and both bodies, parsed as JSON with the `ignore_fields` paths removed, are
  structurally equal; numbers a and b agree when |a − b| ≤ tolerance · max(1, |a|, |b|). A body that is not JSON is a
  disagreement with a reason, never an exception.

Whether green erred (no answer, a timeout, a 5xx) is the caller's to decide first: such a request is a green error,
not a disagreement.
"""

import json
import math
from dataclasses import dataclass
from typing import Any

import jsonpath_ng
from jsonpath_ng.jsonpath import Child, Fields, Root

from store.models import ShadowCompare, ShadowSpec


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


@dataclass(frozen=True)
class Comparison:
    agreed: bool
    reason: str  # why not (empty when they agreed)


AGREED = Comparison(True, "")


class Comparer:
    """One shadow spec, its JSONPath expressions parsed once. Paths that only name object members from the root
    (`$.a`, `$.a.b`, `$["a b"]`: most `ignoreFields`) are removed by a plain walk of dicts, with the same effect as
    jsonpath_ng's filter (which costs tens of microseconds per path, on the proxy's event loop); others go through
    jsonpath_ng."""

    def __init__(self, spec: ShadowSpec) -> None:
        self.spec = spec
        self.ignored: list[Any] = [jsonpath_ng.parse(path) for path in spec.ignore_fields]
        self.members: list[tuple[str, ...] | None] = [member_path(expression) for expression in self.ignored]

    def compare(self, blue: Answer, green: Answer) -> Comparison:
        if blue.status != green.status:
            return Comparison(False, f"status {blue.status} vs {green.status}")
        if self.spec.compare is ShadowCompare.EXACT:
            return AGREED if blue.body == green.body else Comparison(False, "bodies differ")
        parsed = []
        for side, answer in (("blue", blue), ("green", green)):
            try:
                parsed.append(json.loads(answer.body))
            except ValueError as exc:  # UnicodeDecodeError included
                return Comparison(False, f"{side}'s answer is not JSON ({exc})"[:200])
        left, right = (self.strip(value) for value in parsed)
        difference = differ(left, right, self.spec.tolerance, "$")
        return AGREED if difference is None else Comparison(False, difference)

    def strip(self, value: Any) -> Any:
        """`value` without the ignored paths (changed in place, as jsonpath_ng's filter does)."""
        for expression, members in zip(self.ignored, self.members, strict=True):
            if members is None:
                value = expression.filter(lambda _: True, value)
                continue
            node = value
            for key in members[:-1]:
                node = node.get(key) if isinstance(node, dict) else None
            if isinstance(node, dict):
                node.pop(members[-1], None)
        return value


def member_path(expression: Any) -> tuple[str, ...] | None:
    """The member names of a path made only of single, non-wildcard names from the root (`$.a.b` → ("a", "b")), or
    None."""
    names: list[str] = []
    while isinstance(expression, Child) and isinstance(expression.right, Fields):
        fields = expression.right.fields
        if len(fields) != 1 or fields[0] == "*":
            return None
        names.append(fields[0])
        expression = expression.left
    return tuple(reversed(names)) if names and isinstance(expression, Root) else None


def numbers_agree(a: float, b: float, tolerance: float) -> bool:
    if not (math.isfinite(a) and math.isfinite(b)):
        return a == b
    return abs(a - b) <= tolerance * max(1.0, abs(a), abs(b))


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def differ(a: Any, b: Any, tolerance: float, at: str) -> str | None:
    """Where and how two JSON values differ, or None when they agree."""
    if is_number(a) and is_number(b):
        return None if numbers_agree(a, b, tolerance) else f"{at}: {a!r} vs {b!r}"[:200]
    if type(a) is not type(b):
        return f"{at}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        if a.keys() != b.keys():
            only = sorted(set(a) ^ set(b))
            return f"{at}: keys {only[:5]} in one answer only"[:200]
        for key in a:
            found = differ(a[key], b[key], tolerance, f"{at}.{key}")
            if found is not None:
                return found
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{at}: {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = differ(x, y, tolerance, f"{at}[{i}]")
            if found is not None:
                return found
        return None
    return None if a == b else f"{at}: {a!r} vs {b!r}"[:200]
