"""The pool under failures: a transaction that fails gives its connection back, and closing the pool is bounded."""

import asyncio
import time

import pytest

from store.database import open_database


async def test_a_transaction_that_fails_to_begin_gives_its_connection_back(database_url: str) -> None:
    db = open_database(database_url, min_size=1, max_size=1)
    await db.connect()
    try:
        # BEGIN fails after `databases` took the pool's only connection for it. After an outage the cause is a
        # broken connection; an option asyncpg refuses is the same path, on demand.
        with pytest.raises(ValueError, match="isolation"):
            async with db.transaction(isolation="no such level"):
                pass

        # Another task must get the connection: before, it waited forever for the one the failure kept.
        assert await asyncio.wait_for(asyncio.create_task(db.fetch_val("SELECT 1")), timeout=5) == 1
    finally:
        await asyncio.wait_for(db.disconnect(), timeout=10)  # a regression fails here instead of hanging


async def test_closing_the_pool_does_not_wait_forever_for_a_connection_still_in_use(database_url: str) -> None:
    db = open_database(database_url, min_size=1, max_size=2)
    await db.connect()
    holding = asyncio.Event()

    async def stuck_on_its_connection() -> None:  # a task stuck with its connection, as after an outage
        async with db.connection():
            holding.set()
            await asyncio.Event().wait()

    stuck = asyncio.create_task(stuck_on_its_connection())
    await asyncio.wait_for(holding.wait(), timeout=5)

    started = time.monotonic()
    await asyncio.wait_for(db.disconnect(), timeout=10)  # before: Pool.close() waited for that connection forever

    assert time.monotonic() - started < db.close_timeout + 2  # type: ignore[attr-defined]
    assert not db.is_connected
    stuck.cancel()
    await asyncio.gather(stuck, return_exceptions=True)  # its connection is gone: whatever it says on the way out
