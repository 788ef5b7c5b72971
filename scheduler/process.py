"""The scheduler process: passes of `run_once`, woken by LISTEN/NOTIFY or the poll interval, stopped by SIGTERM."""

import asyncio
import contextlib
import logging
import signal

import asyncpg
from databases import Database

from scheduler.runner import step
from store import notifications

log = logging.getLogger("switchover.scheduler")


async def run(db: Database, url: str, *, poll_interval: float, stop: asyncio.Event) -> None:
    """Run until `stop` is set; the step in progress always finishes (its transaction commits or rolls back)."""
    wake = asyncio.Event()
    listener: asyncpg.Connection | None = None
    failures = 0
    while not stop.is_set():
        try:
            if listener is None or listener.is_closed():
                listener = await notifications.listen(url, lambda _: wake.set())
            wake.clear()
            while not stop.is_set() and await step(db):
                pass
            failures = 0
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            failures += 1
            log.warning("database unavailable (%s); retrying", exc)
            listener = None
            wake.clear()
        delay = poll_interval if failures == 0 else min(10.0, poll_interval * 2**failures)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_first(wake, stop), timeout=delay)
    if listener is not None and not listener.is_closed():
        await listener.close()


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


async def main(db: Database, url: str, *, poll_interval: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await db.connect()
    try:
        log.info("scheduler started (poll interval %.2f s)", poll_interval)
        await run(db, url, poll_interval=poll_interval, stop=stop)
        log.info("scheduler stopped")
    finally:
        await db.disconnect()
