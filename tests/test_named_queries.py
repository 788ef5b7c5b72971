"""The store sends its named queries to asyncpg itself: `:name` parameters become `$n` exactly where SQLAlchemy's
`text()` (which `databases` would use) finds them."""

import pytest
from sqlalchemy import text

from store.database import NAMED_PARAMETER, positional
from store.queries import QUERIES


def test_parameters_become_positional_and_casts_stay() -> None:
    sql, args = positional("SELECT :a, CAST(:b AS int), :a, x::int FROM t WHERE y = :b", {"a": 1, "b": 2})
    assert sql == "SELECT $1, CAST($2 AS int), $1, x::int FROM t WHERE y = $2"
    assert args == [1, 2]


def test_a_value_for_no_parameter_is_refused() -> None:
    with pytest.raises(ValueError, match="no parameters"):
        positional("SELECT :a", {"a": 1, "typo": 2})
    with pytest.raises(KeyError):
        positional("SELECT :a, :b", {"a": 1})


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_every_named_query_has_the_parameters_sqlalchemy_finds(name: str) -> None:
    query = QUERIES[name]
    assert set(NAMED_PARAMETER.findall(query)) == set(text(query)._bindparams)
