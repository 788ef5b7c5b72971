"""Comparing blue's and green's answers (SPEC §6, Shadow traffic): a pure table of cases."""

import pytest

from store.models import ShadowCompare, ShadowSpec
from switchover.shadow_compare import Answer, Comparer, numbers_agree

EXACT = ShadowSpec(compare=ShadowCompare.EXACT)


def ok(body: str, status: int = 200) -> Answer:
    return Answer(status, body.encode())


@pytest.mark.parametrize(
    ("spec", "blue", "green", "agreed", "reason"),
    [
        (EXACT, ok('{"a": 1}'), ok('{"a": 1}'), True, ""),
        (EXACT, ok('{"a": 1}'), ok('{"a":1}'), False, "bodies differ"),
        (EXACT, ok("x"), ok("x", 404), False, "status 200 vs 404"),
        (EXACT, Answer(200, b"\xff\xfe"), Answer(200, b"\xff\xfe"), True, ""),
        (ShadowSpec(), ok('{"a": 1, "b": [1, 2]}'), ok('{"b": [1, 2], "a": 1}'), True, ""),
        (ShadowSpec(), ok('{"a": 1}'), ok('{"a": 2}'), False, "$.a: 1 vs 2"),
        (ShadowSpec(), ok('{"a": [1, 2]}'), ok('{"a": [1]}'), False, "$.a: 2 vs 1 items"),
        (ShadowSpec(), ok('{"a": 1}'), ok('{"a": 1, "b": 2}'), False, "keys ['b'] in one answer only"),
        (ShadowSpec(), ok('{"a": true}'), ok('{"a": 1}'), False, "$.a: bool vs int"),
        (ShadowSpec(), ok('{"a": "x"}'), ok('{"a": "y"}'), False, "$.a: 'x' vs 'y'"),
        (ShadowSpec(), ok('{"a": 1}'), ok('{"a": 1.0}'), True, ""),
        (ShadowSpec(), ok('{"a": 1}'), ok('{"a": 1}', 500), False, "status 200 vs 500"),
        (ShadowSpec(), ok("not json"), ok("not json"), False, "blue's answer is not JSON"),
        (ShadowSpec(), ok("{}"), Answer(200, b"\xff"), False, "green's answer is not JSON"),
        (ShadowSpec(tolerance=0.01), ok('{"s": 100.0}'), ok('{"s": 100.9}'), True, ""),
        (ShadowSpec(tolerance=0.01), ok('{"s": 100.0}'), ok('{"s": 101.5}'), False, "$.s: 100.0 vs 101.5"),
        (ShadowSpec(tolerance=0.01), ok('{"s": 0.0}'), ok('{"s": 0.009}'), True, ""),  # max(1, …): absolute near 0
        (ShadowSpec(tolerance=0.01), ok('[0.0]'), ok('[0.02]'), False, "$[0]: 0.0 vs 0.02"),
        (ShadowSpec(ignore_fields=("$.id", "$.items[*].at")),
         ok('{"id": 1, "v": 2, "items": [{"at": 1, "x": 0}]}'), ok('{"id": 9, "v": 2, "items": [{"at": 7, "x": 0}]}'),
         True, ""),
        (ShadowSpec(ignore_fields=("$.id",)), ok('{"id": 1, "v": 2}'), ok('{"id": 9, "v": 3}'), False, "$.v: 2 vs 3"),
        (ShadowSpec(ignore_fields=("$.missing",)), ok('{"v": 2}'), ok('{"v": 2}'), True, ""),
    ],
)  # fmt: skip
def test_answers_are_compared_by_the_spec(
    spec: ShadowSpec, blue: Answer, green: Answer, agreed: bool, reason: str
) -> None:
    comparison = Comparer(spec).compare(blue, green)
    assert comparison.agreed is agreed
    assert reason in comparison.reason and (agreed or comparison.reason)


@pytest.mark.parametrize(
    ("a", "b", "tolerance", "agree"),
    [
        (1, 1, 0, True),
        (1, 1.0000001, 0, False),
        (1000, 1010, 0.01, True),
        (1000, 1011, 0.01, False),
        (-1000, -1010, 0.01, True),
        (0.5, 0.509, 0.01, True),  # |a − b| ≤ 0.01 · max(1, …) = 0.01
        (0.5, 0.52, 0.01, False),
        (float("inf"), float("inf"), 0.5, True),
        (float("nan"), float("nan"), 0.5, False),
    ],
)
def test_numbers_agree_within_a_tolerance_relative_to_the_larger_or_absolute_below_one(
    a: float, b: float, tolerance: float, agree: bool
) -> None:
    assert numbers_agree(a, b, tolerance) is agree
    assert numbers_agree(b, a, tolerance) is agree
