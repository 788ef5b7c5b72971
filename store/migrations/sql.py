"""Migrations are plain SQL files beside their Alembic revision module (same name, `.sql`)."""

from pathlib import Path

from alembic import op


def statements(sql: str) -> list[str]:
    """Split at `;` ending a line, outside `$$` bodies: asyncpg prepares each statement, and a prepared statement
    holds one command."""
    found, current, in_body = [], [], False
    for line in sql.splitlines():
        if not in_body and line.lstrip().startswith("--"):
            continue
        current.append(line)
        in_body ^= line.count("$$") % 2 == 1
        if not in_body and line.rstrip().endswith(";"):
            found.append("\n".join(current).strip().removesuffix(";"))
            current = []
    rest = "\n".join(current).strip()
    return [s for s in (*found, rest) if s]


def run_sql_file(module_file: str) -> None:
    for statement in statements(Path(module_file).with_suffix(".sql").read_text()):
        op.execute(statement)
