"""One scheduler pass in a process of its own (for py-spy): `python -m bench.scheduler_pass DATABASE_URL EXPECTED`."""

import asyncio
import sys

from scheduler.runner import run_once
from store.database import open_database
from switchover.settings import Settings


async def main(url: str, expected: int) -> None:
    workers = Settings().scheduler_workers
    db = open_database(url, max_size=workers + 3)
    await db.connect()
    try:
        steps = await run_once(db, workers=workers)
        assert steps == expected, (steps, expected)
    finally:
        await db.disconnect()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
