"""The scheduler process: passes of `run_once`, woken by LISTEN/NOTIFY or the poll interval, stopped by SIGTERM."""

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable

import asyncpg
from databases import Database

from scheduler.probes import HealthChecker
from scheduler.runner import run_once
from scheduler.runtime import ProcessRuntime
from store import notifications
from switchover.settings import Settings

log = logging.getLogger("switchover.scheduler")


async def run(db: Database, url: str, *, poll_interval: float, stop: asyncio.Event, workers: int = 4) -> None:
    """Run until `stop` is set; the step in progress always finishes (its transaction commits or rolls back)."""
    wake = asyncio.Event()
    listener: asyncpg.Connection | None = None
    failures = 0
    while not stop.is_set():
        try:
            if listener is None or listener.is_closed():
                listener = await notifications.listen(url, lambda _: wake.set())
            wake.clear()
            await run_once(db, workers=workers, stop=stop)
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


async def every(interval: float, pass_once: Callable[[], Awaitable[None]], *, stop: asyncio.Event, name: str) -> None:
    """Run `pass_once` every `interval` seconds until `stop`; a failed pass is logged, the next one still runs."""
    while not stop.is_set():
        try:
            await asyncio.create_task(pass_once())  # a fresh `databases` connection binding each pass (see `run`)
        except Exception:
            log.exception("%s pass failed", name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


async def main(db: Database, url: str, settings: Settings) -> None:
    """The lifecycle loop, plus health checks, plus (with the process runtime) the local replicas."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await db.connect()
    try:
        log.info(
            "scheduler started (runtime %s, poll interval %.2f s)", settings.runtime, settings.poll_interval_seconds
        )
        checker = HealthChecker(
            db,
            timeout_seconds=settings.health_timeout_seconds,
            healthy_after=settings.healthy_after,
            unhealthy_after=settings.unhealthy_after,
        )
        loops = [
            run(db, url, poll_interval=settings.poll_interval_seconds, stop=stop, workers=settings.scheduler_workers),
            every(settings.health_interval_seconds, checker.run_once, stop=stop, name="health check"),
        ]
        if settings.runtime == "process":
            replicas = ProcessRuntime(db, stop_grace_seconds=settings.stop_grace_seconds)
            loops.append(
                every(min(0.5, settings.health_interval_seconds), replicas.run_once, stop=stop, name="runtime")
            )
        try:
            await asyncio.gather(*loops)
        finally:
            await checker.aclose()
        log.info("scheduler stopped")
    finally:
        await db.disconnect()
