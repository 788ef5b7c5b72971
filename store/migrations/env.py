"""Alembic environment: runs migrations over asyncpg against the URL the caller put in the config."""

import asyncio

import asyncpg
from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

# Any number of `switchover migrate` may start at once; one at a time migrates.
MIGRATION_LOCK = 0x5377_6974_6368  # "Switch"


def run_in_transaction(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=None, transaction_per_migration=False)
    with context.begin_transaction():
        connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
        context.run_migrations()


async def run_online() -> None:
    dsn = context.config.attributes["dsn"]
    # The DSN goes to asyncpg untouched, so socket paths (`?host=/dir`) of the embedded server work too.
    engine = create_async_engine("postgresql+asyncpg://", async_creator=lambda: asyncpg.connect(dsn))
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_in_transaction)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run `switchover migrate`")
asyncio.run(run_online())
