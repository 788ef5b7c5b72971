"""Named SQL queries, loaded from `queries.sql` (blocks introduced by `-- name: <query>`)."""

import re
from pathlib import Path

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def load(path: Path) -> dict[str, str]:
    parts = _NAME.split(path.read_text())
    # parts = [preamble, name1, body1, name2, body2, ...]
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice in {path}")
        queries[name] = body.strip()
    return queries


QUERIES = load(Path(__file__).with_name("queries.sql"))
