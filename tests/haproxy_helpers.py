"""A real HAProxy for tests: Debian's `haproxy` package, installed when missing, started on a free port with the
minimal configuration the README shows (a stats socket at `level admin`, `/{name}/...` routed to backend `{name}`
with the `/{name}` prefix stripped, `{name}.preview` for `x-switchover-preview: 1`, empty `roundrobin` backends).

`haproxy_plane` runs it with a real `switchover haproxy` process in front of a database: the same interface as the
built-in proxy's plane (tests/dataplanes.py), so that one load test drives either.
"""

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from switchover.haproxy import PREVIEW_SUFFIX, RuntimeApi, Unreachable
from tests import debian
from tests.prometheus_helpers import free_port

HAPROXY = Path("/usr/sbin/haproxy")
START_SECONDS = 30


def ensure_haproxy() -> None:
    """Install Debian's haproxy package when it is missing; skip the calling tests only if that is impossible."""
    debian.ensure(["haproxy"], provides=[HAPROXY], why="the HAProxy data plane tests")


def config(
    socket: Path,
    port: int,
    names: Sequence[str],
    *,
    balance: str = "roundrobin",
    level: str = "admin",
    metrics_port: int | None = None,
) -> str:
    """The README's haproxy.cfg, with a backend and a preview backend per deployment name, and with `metrics_port`
    its Prometheus exporter frontend."""
    backends = "".join(
        f"\nbackend {backend}\n    balance {balance}\n" for name in names for backend in (name, name + PREVIEW_SUFFIX)
    )
    if metrics_port is not None:
        backends += f"""
frontend metrics
    bind 127.0.0.1:{metrics_port}
    http-request use-service prometheus-exporter if {{ path /metrics }}
"""
    return f"""global
    stats socket {socket} mode 600 level {level}

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch 1

frontend switchover
    bind 127.0.0.1:{port}
    http-request set-var(req.deployment) path,field(2,/)
    http-request set-path %[path,regsub(^/[^/]*/?,/)]
    use_backend %[var(req.deployment)]{PREVIEW_SUFFIX} if {{ req.hdr(x-switchover-preview) -m str 1 }}
    use_backend %[var(req.deployment)]
{backends}"""


class Haproxy:
    """One HAProxy process in its own directory; `restart` replaces it by a fresh one (no servers) on the same socket
    and port, as an operator's restart would."""

    def __init__(
        self,
        directory: Path,
        names: Sequence[str],
        *,
        balance: str = "roundrobin",
        level: str = "admin",
        metrics: bool = False,
    ) -> None:
        ensure_haproxy()
        self.directory = directory
        self.socket = directory / "admin.sock"
        self.port = free_port()
        self.metrics_port = free_port() if metrics else None  # its exporter's /metrics, for Prometheus to scrape
        self.config = directory / "haproxy.cfg"
        self.config.write_text(
            config(self.socket, self.port, names, balance=balance, level=level, metrics_port=self.metrics_port)
        )
        self.log = directory / "haproxy.log"
        self.api = RuntimeApi(str(self.socket), timeout=2)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as output:
            command = [str(HAPROXY), "-db", "-f", str(self.config)]
            return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)

    async def start(self) -> None:
        self.process = self.spawn()
        deadline = time.monotonic() + START_SECONDS
        while True:
            assert self.process.poll() is None, f"haproxy exited with {self.process.returncode}: {self.log_tail()}"
            try:
                if "HAProxy" in await self.api.ask("show info"):
                    return
            except Unreachable:
                pass
            assert time.monotonic() < deadline, f"haproxy not answering in {START_SECONDS} s: {self.log_tail()}"
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    async def restart(self) -> None:
        self.stop()
        await self.start()

    async def stats(self, backend: str) -> dict[str, dict[str, str]]:
        """`show stat` of `backend`: its servers' rows (and BACKEND's), by name, each by column."""
        header, *rows = [line.split(",") for line in (await self.api.ask("show stat")).splitlines() if line]
        columns = [c.removeprefix("# ") for c in header]
        table = [dict(zip(columns, row, strict=False)) for row in rows]
        return {row["svname"]: row for row in table if row["pxname"] == backend}

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-15:]) if self.log.exists() else ""


@asynccontextmanager
async def running_haproxy(
    names: Sequence[str], *, balance: str = "roundrobin", level: str = "admin", metrics: bool = False
) -> AsyncIterator[Haproxy]:
    # A short directory of its own: a UNIX socket path must fit in 108 bytes, which pytest's tmp_path may not.
    directory = Path(tempfile.mkdtemp(prefix="haproxy-"))
    haproxy = Haproxy(directory, names, balance=balance, level=level, metrics=metrics)
    try:
        await haproxy.start()
        yield haproxy
    finally:
        haproxy.stop()
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class Plane:
    """HAProxy in front of the database's routes, kept in step by a `switchover haproxy` process."""

    haproxy: Haproxy
    follower: subprocess.Popen[bytes]
    log: Path  # switchover haproxy's: the process that LISTENs

    def url_for(self, name: str) -> str:
        return f"{self.haproxy.url}/{name}"


def start_follower(database_url: str, socket: Path, log: Path, *, resync_seconds: float) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": database_url}
    command = [sys.executable, "-m", "switchover", "haproxy", "--socket", str(socket)]
    with log.open("ab") as output:
        return subprocess.Popen(
            [*command, "--resync-seconds", str(resync_seconds)], env=env, stdout=output, stderr=subprocess.STDOUT
        )


def read(log: Path) -> str:
    return log.read_text(errors="replace")


async def wait_for_log(process: subprocess.Popen[bytes], log: Path, text: str, *, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while text not in read(log):
        assert process.poll() is None, f"switchover haproxy exited with {process.returncode}: {read(log)}"
        assert time.monotonic() < deadline, f"{text!r} not logged in {within} s: {read(log)}"
        await asyncio.sleep(0.05)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@asynccontextmanager
async def haproxy_plane(
    database_url: str, names: list[str], *, resync_seconds: float = 1.0, metrics: bool = False
) -> AsyncIterator[Plane]:
    """HAProxy with a backend (and a preview backend) per name, and `switchover haproxy` filling them from the
    database; yields once the follower has synced in full (and listens for changes), and stops both at the end,
    whatever happened. `metrics`: with the exporter frontend too (`haproxy.metrics_port`)."""
    async with running_haproxy(names, metrics=metrics) as haproxy:
        log = haproxy.directory / "switchover-haproxy.log"
        follower = start_follower(database_url, haproxy.socket, log, resync_seconds=resync_seconds)
        try:
            await wait_for_log(follower, log, "HAProxy is in step with the routes")
            yield Plane(haproxy, follower, log)
        finally:
            stop_process(follower)
