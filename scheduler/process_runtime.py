"""The process runtime: each PROVISIONING route becomes a local replica process on a free loopback port.

State lives in the database (`runtime_ref` = the pid, `endpoint_url`) and in the operating system, not in this
object, so a restarted scheduler adopts the replicas that are still running instead of starting them again.

Replicas run in sessions of their own, so a terminal's Ctrl-C does not reach them, and a scheduler that stops (told
to, or not) leaves them serving: a scheduler restart is no outage, and the next scheduler adopts them. Whoever wants
them gone as well stops them itself (the demo kills every process of its run).
"""

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import psutil
from databases import Database

from store import replicas, route_health
from store.errors import InvalidState
from store.models import Route, RouteStatus

log = logging.getLogger("switchover.runtime")
ACTOR = "runtime"


def _ref(pid: int) -> str:
    return f"pid:{pid}"


def _pid(runtime_ref: str | None) -> int | None:
    if runtime_ref is None or not runtime_ref.startswith("pid:"):
        return None
    return int(runtime_ref.removeprefix("pid:"))


def replica_alive(pid: int, route_id: str) -> bool:
    """Whether `pid` is still the replica of this route (pids are reused)."""
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and route_id in process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


class ProcessRuntime:
    def __init__(self, db: Database, *, stop_grace_seconds: float = 5.0) -> None:
        self.db = db
        self.stop_grace_seconds = stop_grace_seconds
        self.children: dict[int, subprocess.Popen[bytes]] = {}  # replicas this process started, to reap them
        self.stopping: dict[int, float] = {}  # pid -> when SIGKILL follows the SIGTERM

    async def run_once(self) -> None:
        await self.start_pending()
        await self.watch()

    async def start_pending(self, *, limit: int = 50) -> None:
        # One short transaction per route: its row stays locked only while its process is spawned.
        for _ in range(limit):
            async with self.db.transaction():
                claimed = await replicas.claim_routes_to_start(self.db, limit=1)
                if not claimed:
                    return
                item = claimed[0]
                pid, url = self._spawn(item)
                try:
                    await replicas.attach_runtime(self.db, item.route.id, runtime_ref=_ref(pid), endpoint_url=url)
                except BaseException:
                    self._signal(pid, signal.SIGKILL)
                    raise
                log.info("started replica of route %s (revision %d) as pid %d at %s", item.route.id,
                         item.revision_number, pid, url)  # fmt: skip

    def _spawn(self, item: replicas.RouteToStart) -> tuple[int, str]:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        port = listener.getsockname()[1]
        env = {**os.environ, **{str(k): str(v) for k, v in item.env.items()}}
        try:
            process = subprocess.Popen(
                [
                    sys.executable, "-m", "switchover.replica", "--fd", str(listener.fileno()),
                    "--route", item.route.id, "--image", item.image, "--revision", str(item.revision_number),
                    "--health-path", item.health_check_path,
                ],
                pass_fds=[listener.fileno()],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # replicas outlive a scheduler restart; it adopts them
            )  # fmt: skip
        finally:
            listener.close()
        self.children[process.pid] = process
        return process.pid, f"http://127.0.0.1:{port}"

    async def watch(self) -> None:
        """Stop what must stop; report replicas that died."""
        self._reap()
        for watched in await replicas.routes_with_runtime(self.db):
            route = watched.route
            pid = _pid(route.runtime_ref)
            alive = pid is not None and replica_alive(pid, route.id)
            if route.status is RouteStatus.TERMINATING:
                if alive:
                    assert pid is not None
                    self._stop(pid)
                else:
                    await self._report(route.id, RouteStatus.TERMINATED)
            elif not alive:
                await self._replica_gone(route)

    async def _replica_gone(self, route: Route) -> None:
        """A replica that never came up failed to start; one that served is first reported UNHEALTHY, then
        restarted in place (back to PROVISIONING, like a container restart), so capacity comes back."""
        if route.status is RouteStatus.PROVISIONING:
            log.warning("replica of route %s exited before it became healthy", route.id)
            await self._report(route.id, RouteStatus.FAILED_TO_START)
        elif route.status is not RouteStatus.UNHEALTHY:
            log.warning("replica of route %s is gone", route.id)
            await self._report(route.id, RouteStatus.UNHEALTHY)
        else:
            log.info("restarting the replica of route %s", route.id)
            await replicas.detach_runtime(self.db, route.id)
            await self._report(route.id, RouteStatus.PROVISIONING)

    def _stop(self, pid: int) -> None:
        now = time.monotonic()
        if pid not in self.stopping:
            self.stopping[pid] = now + self.stop_grace_seconds
            self._signal(pid, signal.SIGTERM)
        elif now >= self.stopping[pid]:
            self._signal(pid, signal.SIGKILL)

    def _signal(self, pid: int, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    def _reap(self) -> None:
        for pid, process in list(self.children.items()):
            if process.poll() is not None:
                del self.children[pid]
                self.stopping.pop(pid, None)

    async def _report(self, route_id: str, status: RouteStatus) -> None:
        with contextlib.suppress(InvalidState):  # someone else reported it first
            await route_health.report_route_health(self.db, route_id, status, actor=ACTOR)

    def stop_all_started_here(self) -> None:
        """For tests: kill the replicas this object started, and wait for them."""
        for pid in list(self.children):
            self._signal(pid, signal.SIGKILL)
        for process in self.children.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        self.children.clear()
