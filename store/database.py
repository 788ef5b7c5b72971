"""Opening the database, and bringing its schema up to date with Alembic."""

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from databases import Database

from store.errors import SchemaOutOfDate
from store.queries import QUERIES

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
log = logging.getLogger("switchover.database")


async def _init_connection(connection: asyncpg.Connection) -> None:
    await connection.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _nothing_to_reset(connection: asyncpg.Connection) -> None:
    """Released connections keep their session as it is: the store sets no session state (no SET, LISTEN, cursors
    or session advisory locks; listeners get connections of their own), and asyncpg still rolls back a transaction
    left open. The default reset (UNLISTEN, RESET ALL, ...) is one more round trip on every release: one in every
    scheduler step, one in every read outside a transaction."""


NAMED_PARAMETER = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")  # the bind pattern of SQLAlchemy's text()
_POSITIONAL: dict[str, tuple[str, tuple[str, ...]]] = {}


def positional(query: str, values: dict[str, Any] | None) -> tuple[str, list[Any]]:
    """`:name` parameters as asyncpg's `$n`, converted once per query text (`databases` compiles a SQLAlchemy
    `text()` on every call: the largest Python cost of a promotion under cProfile). Texts come from the code
    (`queries.sql` and a few fixed statements), so the cache stays small."""
    converted = _POSITIONAL.get(query)
    if converted is None:
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match.group(1) not in names:
                names.append(match.group(1))
            return f"${names.index(match.group(1)) + 1}"

        converted = _POSITIONAL[query] = (NAMED_PARAMETER.sub(number, query), tuple(names))
    sql, names = converted
    values = values or {}
    unknown = set(values) - set(names)
    if unknown:
        raise ValueError(f"the query has no parameters {sorted(unknown)}")
    return sql, [values[name] for name in names]


async def on_connection(db: Database, method: str, sql: str, *args: Any) -> Any:
    """`sql` (asyncpg's `$n` parameters) run by asyncpg's `method` (fetch, fetchrow, fetchval) on the connection, and
    in the transaction, that `databases` holds for this task: its documented `raw_connection`. `databases` gives
    every task a connection of its own, and a task sends one statement at a time, so nothing else uses it meanwhile."""
    async with db.connection() as connection:
        return await getattr(connection.raw_connection, method)(sql, *args)


class Store(Database):
    """`databases.Database`, with plain-text queries sent straight to asyncpg (prepared once per connection, by
    asyncpg's statement cache) on the connection `databases` holds for the task. Rows are asyncpg's.

    Transactions are asyncpg's own, on that connection, inside `databases`' public `connection()` context: whatever
    fails (BEGIN after an outage included), leaving the context gives the connection back to the pool. (`databases`
    0.9's own transactions keep a connection checked out for good when BEGIN, COMMIT or ROLLBACK fails, and the
    pool's close then waits for it forever.) `disconnect` waits at most `close_timeout` seconds for connections
    still in use, then closes them under their users."""

    close_timeout: float = 2.0  # by then, connections still in use belong to tasks stuck on a silent database

    def __init__(self, url: str, *, force_rollback: bool = False, **options: Any) -> None:
        if force_rollback:  # it shares one connection among tasks, which `on_connection` relies on never happening
            raise ValueError("the store gives each task a connection of its own: force_rollback is not supported")
        super().__init__(url, **options)

    @contextlib.asynccontextmanager
    async def transaction(self, **options: Any) -> AsyncIterator[None]:  # type: ignore[override]
        """One transaction (a savepoint when nested) of this task's connection; `options` are asyncpg's
        (`isolation`, `readonly`, `deferrable`)."""
        async with self.connection() as connection, connection.raw_connection.transaction(**options):
            yield

    async def disconnect(self) -> None:
        # asyncpg's Pool.close() waits for every checked-out connection, with no limit; cancelled, it terminates
        # the pool instead (its documented behaviour). A task stuck on a database that stopped answering must not
        # keep a process from exiting.
        try:
            await asyncio.wait_for(super().disconnect(), timeout=self.close_timeout)
            return
        except TimeoutError:
            log.warning("connections still in use after %.1f s: closed under their users", self.close_timeout)
        await super().disconnect()  # the pool is terminated now: this only forgets it

    async def fetch_all(self, query: Any, values: dict[str, Any] | None = None) -> list[Any]:
        if not isinstance(query, str):
            return await super().fetch_all(query, values)
        sql, args = positional(query, values)
        return await on_connection(self, "fetch", sql, *args)

    async def fetch_one(self, query: Any, values: dict[str, Any] | None = None) -> Any:
        if not isinstance(query, str):
            return await super().fetch_one(query, values)
        sql, args = positional(query, values)
        return await on_connection(self, "fetchrow", sql, *args)

    async def fetch_val(self, query: Any, values: dict[str, Any] | None = None, column: Any = 0) -> Any:
        row = await self.fetch_one(query, values)
        return None if row is None else row[column]

    async def execute(self, query: Any, values: dict[str, Any] | None = None) -> Any:
        if not isinstance(query, str):
            return await super().execute(query, values)
        sql, args = positional(query, values)
        return await on_connection(self, "fetchval", sql, *args)


def open_database(url: str, *, min_size: int = 1, max_size: int = 10, statement_timeout_ms: int = 10_000) -> Database:
    """A connection pool (not yet connected) whose connections decode jsonb and time out runaway statements."""
    return Store(
        url,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_nothing_to_reset,
        server_settings={
            "statement_timeout": str(statement_timeout_ms),
            "application_name": "switchover",
            # Floats as text in their shortest exact form, as Python writes them (store/json_reads.py builds JSON
            # in PostgreSQL); the default since PostgreSQL 12, but a server or role may set it lower.
            "extra_float_digits": "1",
        },
    )


def _alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["dsn"] = url
    return config


def migrate(url: str) -> str:
    """Apply every pending migration; returns the version the database is at afterwards."""
    command.upgrade(_alembic_config(url), "head")
    return expected_version()


def expected_version() -> str:
    heads = ScriptDirectory.from_config(_alembic_config("")).get_heads()
    assert len(heads) == 1, f"migrations must form one line, found heads {heads}"
    return heads[0]


async def check_schema(db: Database) -> None:
    """Refuse to run against a database whose schema is not the one this code was written for."""
    expected = expected_version()
    try:
        current = await db.fetch_val(QUERIES["schema_version"])
    except asyncpg.UndefinedTableError:
        current = None
    if current != expected:
        found = f"at version {current}" if current else "empty (never migrated)"
        raise SchemaOutOfDate(
            f"the database schema is {found}, but this Switchover needs version {expected}: "
            "run `switchover migrate` first"
        )
