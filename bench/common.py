"""What every benchmark needs: databases of its own, the product's processes, RSS sampling, statistics."""

import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil

from store.database import migrate

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
WORK = BENCH / ".work"  # logs and scratch files (git-ignored)
SERVER_URL = os.environ.get("SWITCHOVER_BENCH_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/test")


def url_of(database: str) -> str:
    return urlunsplit(urlsplit(SERVER_URL)._replace(path=f"/{database}"))


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(SERVER_URL)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def create_database(label: str) -> str:
    """A fresh, migrated database; returns its URL."""
    name = f"switchover_bench_{label}_{uuid.uuid4().hex[:8]}"
    await _admin(f'CREATE DATABASE "{name}"')
    await asyncio.to_thread(migrate, url_of(name))
    return url_of(name)


async def drop_database(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def drop_leftover_databases() -> None:
    """Databases of an earlier bench run that was interrupted. One that has connections belongs to a bench run still
    going (another section run side by side with `--only`): dropping it would break that run."""
    connection = await asyncpg.connect(SERVER_URL)
    try:
        names = [
            r[0]
            for r in await connection.fetch(
                """SELECT datname FROM pg_database d WHERE datname LIKE 'switchover_bench_%'
                   AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)"""
            )
        ]
    finally:
        await connection.close()
    for name in names:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Process:
    """A product process (or the floor app) started by the bench, logging to bench/.work/."""

    name: str
    popen: subprocess.Popen[bytes]
    port: int | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def target_pid(self) -> int:
        """The Python process itself, also when it runs under py-spy."""
        with contextlib.suppress(psutil.Error):
            children = psutil.Process(self.pid).children()
            if children and "py-spy" in psutil.Process(self.pid).name():
                return children[0].pid
        return self.pid

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.target_pid()).cpu_times()
        return times.user + times.system

    def stop(self, timeout: float = 20) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.target_pid(), signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def start(
    name: str, args: Sequence[str], env: dict[str, str], *, port: int | None = None, profile: Path | None = None
) -> Process:
    WORK.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, *args]
    if profile is not None:
        spy = Path(sys.executable).with_name("py-spy")
        command = [
            str(spy),
            "record",
            "--nonblocking",
            "--format",
            "raw",
            "--rate",
            "500",
            "--output",
            str(profile),
            "--",
            *command,
        ]
    with (WORK / f"{name}.log").open("ab") as log:
        popen = subprocess.Popen(
            command, env={**os.environ, **env}, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    return Process(name, popen, port)


def wait_http(process: Process, path: str = "/ready", timeout: float = 30) -> None:
    assert process.port is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} exited with {process.popen.returncode}; see {WORK / process.name}.log")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", process.port), timeout=1) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
            if s.recv(64).startswith(b"HTTP/1.1 200"):
                return
        time.sleep(0.1)
    raise RuntimeError(f"{process.name} did not answer {path} within {timeout} s")


def start_server(database_url: str, *, profile: Path | None = None, name: str = "server") -> Process:
    """`switchover serve --insecure`, as an operator would start it."""
    port = free_port()
    process = start(
        name,
        ["-m", "switchover", "serve", "--insecure", "--port", str(port)],
        {"DATABASE_URL": database_url},
        port=port,
        profile=profile,
    )
    wait_http(process)
    return process


def start_scheduler(
    database_url: str, *, name: str = "scheduler", profile: Path | None = None, env: dict[str, str] | None = None
) -> Process:
    return start(
        name,
        ["-m", "switchover", "scheduler"],
        {"DATABASE_URL": database_url, "SWITCHOVER_RUNTIME": "external", **(env or {})},
        profile=profile,
    )


def start_floor(database_url: str) -> Process:
    """The bare Starlette + asyncpg app serving the same reads without GraphQL."""
    port = free_port()
    process = start("floor", ["-m", "bench.floor_app", "--port", str(port)], {"DATABASE_URL": database_url}, port=port)
    wait_http(process, "/ready")
    return process


@dataclass
class RssSampler:
    """Samples the resident set size of named processes every `interval` seconds, in a thread."""

    interval: float = 0.2
    peaks: dict[str, dict[str, float]] = field(default_factory=dict)  # phase -> process -> peak MiB
    _watched: dict[str, int] = field(default_factory=dict)
    _phase: str = "setup"
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def watch(self, name: str, pid: int) -> None:
        self._watched[name] = pid

    def unwatch(self, name: str) -> None:
        self._watched.pop(name, None)

    def phase(self, name: str) -> None:
        self._phase = name

    def _sample(self) -> None:
        for name, pid in list(self._watched.items()):
            with contextlib.suppress(psutil.Error):
                rss = psutil.Process(pid).memory_info().rss / 2**20
                phase = self.peaks.setdefault(self._phase, {})
                phase[name] = max(phase.get(name, 0.0), rss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "RssSampler":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(values_s: Sequence[float]) -> dict[str, float]:
    """Milliseconds: median, p90, p99, mean, min, max and the count."""
    ms = [v * 1000 for v in values_s]
    return {
        "n": len(ms),
        "median": statistics.median(ms),
        "p90": percentile(ms, 90),
        "p99": percentile(ms, 99),
        "mean": statistics.fmean(ms),
        "min": min(ms),
        "max": max(ms),
    }


def machine() -> dict[str, str]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": str(os.cpu_count()),
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


async def postgres_version() -> str:
    connection = await asyncpg.connect(SERVER_URL)
    try:
        return str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()


async def backend_pids(database_url: str) -> list[int]:
    """PostgreSQL backends connected to this database (to count their CPU time)."""
    name = urlsplit(database_url).path.lstrip("/")
    connection = await asyncpg.connect(SERVER_URL)
    try:
        rows = await connection.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", name)
    finally:
        await connection.close()
    return [r["pid"] for r in rows]


def cpu_of(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
    return total


@contextlib.contextmanager
def timer() -> Iterator[dict[str, float]]:
    box: dict[str, float] = {}
    started = time.perf_counter()
    try:
        yield box
    finally:
        box["seconds"] = time.perf_counter() - started


def run_module(module: str, name: str, config: dict[str, Any]) -> Any:
    """Run `python -m <module> CONFIG RESULT` in a process of its own (a load generator must not share the bench's
    core), and return the JSON it wrote to RESULT."""
    WORK.mkdir(parents=True, exist_ok=True)
    config_path, result_path = WORK / f"{name}-config.json", WORK / f"{name}-result.json"
    config_path.write_text(json.dumps(config))
    subprocess.run(
        [sys.executable, "-m", module, str(config_path), str(result_path)],
        cwd=ROOT,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return json.loads(result_path.read_text())
