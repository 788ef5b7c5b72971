"""LISTEN/NOTIFY: how API servers wake schedulers and data planes without waiting for the next poll.

The LISTEN connection outlives database outages: when it is lost it is opened again by itself (every
`retry_seconds`), and once it is back `on_change("")` is called, an empty payload meaning "anything may have changed
meanwhile": notifications sent while nobody listened are lost, so a listener then re-reads everything.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg

CHANNEL = "switchover_deployments"  # a deployment or its routes changed: schedulers and data planes
WEBHOOK_CHANNEL = "switchover_webhooks"  # a webhook delivery is waiting: schedulers only (migration 0009's trigger)

log = logging.getLogger("switchover.notifications")


class Listener:
    """A LISTEN connection that reconnects by itself; `close()` (or `terminate()`) ends it."""

    def __init__(
        self, url: str, on_change: Callable[[str], None], retry_seconds: float, channels: tuple[str, ...]
    ) -> None:
        self.url, self.on_change, self.retry_seconds, self.channels = url, on_change, retry_seconds, channels
        self.connection: asyncpg.Connection | None = None
        self.closed = False
        self.reconnecting: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        connection = await asyncpg.connect(self.url)
        try:
            for channel in self.channels:
                await connection.add_listener(channel, self._deliver)
        except BaseException:
            connection.terminate()
            raise
        connection.add_termination_listener(self._lost)
        self.connection = connection

    def _deliver(self, connection: asyncpg.Connection, pid: int, channel: str, payload: str) -> None:
        self.on_change(payload)

    def _lost(self, connection: asyncpg.Connection) -> None:
        if self.closed or self.reconnecting is not None:
            return
        log.warning("LISTEN connection lost; reconnecting every %.1f s", self.retry_seconds)
        self.reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        try:
            while not self.closed:
                await asyncio.sleep(self.retry_seconds)
                try:
                    await self.connect()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                    log.debug("LISTEN reconnect failed: %s", exc)
                    continue
                log.info("LISTEN connection re-established")
                self.reconnecting = None
                self.on_change("")  # what changed during the outage was not announced to us
                return
        finally:
            self.reconnecting = None

    def is_closed(self) -> bool:
        """Only after `close()`/`terminate()`: a lost connection is being re-opened, not closed."""
        return self.closed

    def _stop(self) -> asyncpg.Connection | None:
        self.closed = True
        if self.reconnecting is not None:
            self.reconnecting.cancel()
        connection, self.connection = self.connection, None
        return connection

    def terminate(self) -> None:
        """Close without waiting for the server (one that does not answer must not hold up a stop)."""
        connection = self._stop()
        if connection is not None:
            connection.terminate()

    async def close(self) -> None:
        connection = self._stop()
        if connection is not None and not connection.is_closed():
            with contextlib.suppress(OSError, asyncpg.InterfaceError, TimeoutError):
                await asyncio.wait_for(connection.close(), timeout=2)
            if not connection.is_closed():
                connection.terminate()


async def listen(
    url: str, on_change: Callable[[str], None], *, retry_seconds: float = 0.25, channels: tuple[str, ...] = (CHANNEL,)
) -> Listener:
    """A dedicated connection that calls `on_change(deployment_id)` for every committed change announced on
    `channels` (and `on_change("")` after it was re-opened following an outage); close it when done. Raises when the
    first connection fails."""
    listener = Listener(url, on_change, retry_seconds, channels)
    await listener.connect()
    return listener
