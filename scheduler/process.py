"""The scheduler process: passes of `run_once`, woken by LISTEN/NOTIFY or the poll interval, stopped by SIGTERM or
SIGINT.

Stopping takes a few seconds at most, whatever the database does: the passes in progress get `SHUTDOWN_GRACE_SECONDS`
to finish (a step's transaction commits or rolls back); past that, their connections are closed under them (the
server rolls their transactions back) and they are cancelled. With the process runtime, the replicas keep serving
whether the scheduler was told to stop or died (SIGKILL, a crash): the next scheduler adopts them
(`scheduler/process_runtime.py`). Whoever wants them gone too (the demo) stops them itself.
"""

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable

import asyncpg
from databases import Database
from opentelemetry.trace import Tracer

from scheduler.probes import HealthChecker
from scheduler.process_runtime import ProcessRuntime
from scheduler.providers import Providers
from scheduler.runner import deliver_once, run_once
from store import notifications
from switchover import tracing
from switchover.settings import Settings

log = logging.getLogger("switchover.scheduler")
SHUTDOWN_GRACE_SECONDS = 5.0  # a pass takes milliseconds; one still running after this waits on a silent database
DATABASE_UNAVAILABLE = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


async def run(
    db: Database,
    url: str,
    *,
    poll_interval: float,
    stop: asyncio.Event,
    workers: int = 4,
    providers: Providers | None = None,
    tracer: Tracer | None = None,
) -> None:
    """Lifecycle passes until `stop` is set; the step in progress always finishes (its transaction commits or rolls
    back). Webhook deliveries run in a loop of their own (`deliver`)."""

    async def pass_once() -> None:
        await run_once(db, workers=workers, stop=stop, providers=providers, tracer=tracer, deliveries=False)

    await woken(url, notifications.CHANNEL, pass_once, poll_interval=poll_interval, stop=stop)


async def deliver(
    db: Database, url: str, *, poll_interval: float, stop: asyncio.Event, workers: int, providers: Providers
) -> None:
    """Webhook delivery passes until `stop`, woken when a delivery is queued: a receiver that is slow or down holds
    up only this loop, never a rollout."""

    async def pass_once() -> None:
        await deliver_once(db, workers=workers, stop=stop, providers=providers)

    await woken(url, notifications.WEBHOOK_CHANNEL, pass_once, poll_interval=poll_interval, stop=stop)


async def woken(
    url: str, channel: str, pass_once: Callable[[], Awaitable[None]], *, poll_interval: float, stop: asyncio.Event
) -> None:
    """`pass_once` whenever `channel` is notified, or every `poll_interval`, until `stop`."""
    wake = asyncio.Event()
    listener: notifications.Listener | None = None
    failures = 0
    try:
        while not stop.is_set():
            try:
                if listener is None or listener.is_closed():
                    listener = await notifications.listen(url, lambda _: wake.set(), channels=(channel,))
                wake.clear()
                await pass_once()
                failures = 0
            except Exception as exc:
                # Any failed pass is retried after a pause: a scheduler that stopped scheduling but kept running
                # would be the worst outcome. After an outage asyncpg can also raise errors of its own
                # (InternalClientError) besides the usual connection errors.
                failures += 1
                if isinstance(exc, DATABASE_UNAVAILABLE):
                    log.warning("database unavailable (%s); retrying", exc)
                else:
                    log.exception("scheduler pass failed; retrying")
                _drop(listener)
                listener = None
                wake.clear()
            delay = poll_interval if failures == 0 else min(10.0, poll_interval * 2**failures)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first(wake, stop), timeout=delay)
    finally:
        _drop(listener)


def _drop(listener: notifications.Listener | None) -> None:
    """Close the LISTEN connection without waiting for the server: it has nothing to finish, and a server that does
    not answer must not hold up a stop."""
    if listener is not None:
        listener.terminate()


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


async def main(db: Database, url: str, settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """The lifecycle loop, plus health checks, plus (with the process runtime) the local replicas; until SIGTERM or
    SIGINT (or `stop`)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await db.connect()
    checker = HealthChecker(
        db,
        timeout_seconds=settings.health_timeout_seconds,
        healthy_after=settings.healthy_after,
        unhealthy_after=settings.unhealthy_after,
    )
    providers = Providers(prometheus_url=settings.prometheus_url, allow_loopback=settings.allow_loopback_urls)
    loops = [
        run(
            db,
            url,
            poll_interval=settings.poll_interval_seconds,
            stop=stop,
            workers=settings.scheduler_workers,
            providers=providers,
            tracer=tracing.tracer(tracing.configure("switchover-scheduler")),  # None unless OTEL_* turns it on
        ),
        deliver(
            db,
            url,
            poll_interval=settings.poll_interval_seconds,
            stop=stop,
            workers=settings.scheduler_workers,
            providers=providers,
        ),
        every(settings.health_interval_seconds, checker.run_once, stop=stop, name="health check"),
    ]
    if settings.runtime == "process":
        replicas = ProcessRuntime(db, stop_grace_seconds=settings.stop_grace_seconds)
        loops.append(every(min(0.5, settings.health_interval_seconds), replicas.run_once, stop=stop, name="runtime"))
    log.info("scheduler started (runtime %s, poll interval %.2f s)", settings.runtime, settings.poll_interval_seconds)
    tasks = [asyncio.create_task(c) for c in loops]  # each catches its own failures and runs until `stop`
    try:
        await stop.wait()
        _, busy = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_SECONDS)
        if busy:
            log.warning(
                "%d loops still busy %.0f s after the stop: closing their connections",
                len(busy),
                SHUTDOWN_GRACE_SECONDS,
            )
    finally:
        stop.set()
        await db.disconnect()  # bounded (store.database.Store): closes connections still in use under their users
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_SECONDS)
        await checker.aclose()
        await providers.aclose()
    log.info("scheduler stopped")
