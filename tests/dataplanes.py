"""Data planes under test, all with one interface (`Plane.url_for(name)`: the base URL to which `/{rest}` is
appended; `Plane.log`: the log of the process that reads the database), and the load generator that drives them."""

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import aiohttp

RATE = 250  # requests per second the load offers by default; tests ask for at least 200 achieved


class Plane(Protocol):
    def url_for(self, name: str) -> str: ...

    @property
    def log(self) -> Path:
        """The log of the process that reads the database (and LISTENs)."""
        ...


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_proxy(database_url: str, port: int, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "switchover", "proxy", "--port", str(port)],
            env={**os.environ, "DATABASE_URL": database_url, **env}, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip


@dataclass
class BuiltinPlane:
    """A real `switchover proxy` process."""

    base: str
    process: subprocess.Popen[bytes]
    log: Path

    def url_for(self, name: str) -> str:
        return f"{self.base}/{name}"


@asynccontextmanager
async def builtin_proxy(
    database_url: str, *, log_dir: Path | None = None, env: dict[str, str] | None = None
) -> AsyncIterator[Plane]:
    """`switchover proxy` on a free port against `database_url` (`env`: settings to add, SWITCHOVER_PROXY_*);
    yields once it answers, stops it at the end."""
    port = free_port()
    directory = log_dir or Path(tempfile.mkdtemp(prefix="switchover-proxy-"))
    log = directory / f"switchover-proxy-{port}.log"
    process = start_proxy(database_url, port, log, env or {})
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 20
            while True:
                assert process.poll() is None, f"switchover proxy exited: {log.read_text()[-2000:]}"
                assert time.monotonic() < deadline, f"switchover proxy did not start: {log.read_text()[-2000:]}"
                try:
                    async with session.get(f"{base}/health") as answer:
                        if answer.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        yield BuiltinPlane(base, process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log_dir is None:
            shutil.rmtree(directory, ignore_errors=True)


@dataclass
class Load:
    """An open-loop load: a request every 1/`rate` seconds whatever the answers take, each ending as a revision
    number (a 200 from a replica) or a failure (anything else, described)."""

    url: str
    rate: float
    body: bytes = b"hello"
    answered: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    in_flight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    sent: int = 0
    started: float = 0.0
    stopped: float = 0.0

    @property
    def achieved_rate(self) -> float:
        return self.sent / max(self.stopped - self.started, 1e-9)

    def summary(self) -> str:
        rate = self.achieved_rate
        return f"{self.sent} sent at {rate:.0f}/s, answered {dict(self.answered)}, failed {self.failures[:5]}"

    async def one(self, session: aiohttp.ClientSession) -> None:
        self.in_flight += 1
        try:
            async with session.post(self.url, data=self.body) as answer:
                payload = await answer.read()
                if answer.status != 200:
                    self.failures.append(f"HTTP {answer.status}: {payload[:200]!r}")
                    return
                self.answered[int((await answer.json())["revision"])] += 1
        except Exception as exc:
            self.failures.append(repr(exc))
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self.idle.set()

    async def quiet(self) -> None:
        """Until no request is in flight. Returns in the same step as it checked, so the caller may act before
        another request starts (a replica killed then had no request in flight)."""
        while self.in_flight:
            self.idle.clear()
            await self.idle.wait()

    async def until_answered(self, revision: int, more: int, *, within: float = 30) -> None:
        """Until `more` requests past the current count were answered by `revision`."""
        target = self.answered[revision] + more
        deadline = time.monotonic() + within
        while self.answered[revision] < target:
            assert time.monotonic() < deadline, f"revision {revision} not answering: {self.summary()}"
            self.idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.idle.wait(), 0.05)


@asynccontextmanager
async def load(url: str, *, rate: float = RATE) -> AsyncIterator[Load]:
    """Runs the load while the block runs; every request sent has ended when it exits."""
    state = Load(url, rate)
    stop = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=15)) as session:
        tasks: set[asyncio.Task[None]] = set()

        async def drive() -> None:
            loop = asyncio.get_running_loop()
            state.started = loop.time()
            while not stop.is_set():
                due = state.started + state.sent / rate
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
                state.sent += 1
                task = asyncio.create_task(state.one(session))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            state.stopped = loop.time()

        driver = asyncio.create_task(drive())
        try:
            yield state
        finally:
            stop.set()
            await driver
            await asyncio.gather(*tasks)
