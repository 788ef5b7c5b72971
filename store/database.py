"""Opening the database, and bringing its schema up to date with Alembic."""

import json
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from databases import Database

from store.errors import SchemaOutOfDate
from store.queries import QUERIES

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


async def _init_connection(connection: asyncpg.Connection) -> None:
    await connection.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def open_database(url: str, *, min_size: int = 1, max_size: int = 10, statement_timeout_ms: int = 10_000) -> Database:
    """A connection pool (not yet connected) whose connections decode jsonb and time out runaway statements."""
    return Database(
        url,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        server_settings={"statement_timeout": str(statement_timeout_ms), "application_name": "switchover"},
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
