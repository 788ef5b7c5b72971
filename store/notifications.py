"""LISTEN/NOTIFY: how API servers wake schedulers without waiting for the next poll."""

from collections.abc import Callable

import asyncpg

CHANNEL = "switchover_deployments"


async def listen(url: str, on_change: Callable[[str], None]) -> asyncpg.Connection:
    """A dedicated connection that calls `on_change(deployment_id)` for every committed change; close it when done."""
    connection = await asyncpg.connect(url)

    def deliver(connection: asyncpg.Connection, pid: int, channel: str, payload: str) -> None:
        on_change(payload)

    await connection.add_listener(CHANNEL, deliver)
    return connection
