"""Migrations are plain SQL files beside their Alembic revision module (same name, `.sql`)."""

import re
from pathlib import Path

from alembic import op

# asyncpg prepares each statement, and a prepared statement holds one command: split at `;` ending a line.
_STATEMENT_END = re.compile(r";\s*$", re.MULTILINE)


def statements(sql: str) -> list[str]:
    without_comments = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in _STATEMENT_END.split(without_comments) if s.strip()]


def run_sql_file(module_file: str) -> None:
    for statement in statements(Path(module_file).with_suffix(".sql").read_text()):
        op.execute(statement)
