"""A real Prometheus server for tests: Debian's `prometheus` package, installed when missing, started on a free port
with its own storage, scraping given targets every second.

`running_prometheus` waits (polling with a deadline) until every target is up, so the targets must already answer on
their own: a server in another process, or one in another thread — a server inside the test's event loop is not
served while a synchronous fixture polls.
"""

import json
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests import debian

PROMETHEUS = Path("/usr/bin/prometheus")
JOB = "switchover-tests"
START_SECONDS = 60  # ≈ 6 s here (its first scrape waits for target discovery); generous for a loaded machine


def ensure_prometheus() -> None:
    """Install Debian's prometheus package when it is missing; skip the calling tests only if that is impossible."""
    debian.ensure(["prometheus"], provides=[PROMETHEUS], why="the provider tests")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape_config(targets: Sequence[tuple[str, Mapping[str, str]]]) -> str:
    """One job scraping each (host:port, extra labels) every second. JSON is YAML, and json.dumps escapes any label
    value exactly (quotes, backslashes, newlines), which the escaping tests rely on."""
    config = {
        # The timeout must not exceed the interval, or Prometheus refuses the configuration.
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": JOB,
                "static_configs": [{"targets": [address], "labels": dict(labels)} for address, labels in targets],
            }
        ],
    }
    return json.dumps(config, indent=2)


def _log_tail(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-15:])


def _targets_up(url: str) -> int:
    """How many of the job's targets were up at their last scrape; -1 while Prometheus does not answer yet."""
    try:
        response = httpx.get(f"{url}/api/v1/query", params={"query": f'up{{job="{JOB}"}} == 1'}, timeout=2)
        return len(response.json()["data"]["result"]) if response.status_code == 200 else -1
    except (httpx.HTTPError, ValueError, KeyError):
        return -1


def wait_until_up(url: str, process: subprocess.Popen[bytes], count: int, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while _targets_up(url) < count:
        if process.poll() is not None:
            pytest.fail(f"prometheus exited with {process.returncode}:\n{_log_tail(log)}")
        if time.monotonic() > deadline:
            pytest.fail(f"prometheus did not see its {count} target(s) up within {START_SECONDS} s:\n{_log_tail(log)}")
        time.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def running_prometheus(directory: Path, targets: Sequence[tuple[str, Mapping[str, str]]]) -> Iterator[str]:
    """Prometheus scraping `targets` (host:port and the labels to add to their series) into `directory`; yields its
    base URL once every target is up, and stops it at the end, whatever happened."""
    ensure_prometheus()
    config = directory / "prometheus.yml"
    config.write_text(scrape_config(targets))
    log = directory / "prometheus.log"
    address = f"127.0.0.1:{free_port()}"
    command = [
        str(PROMETHEUS),
        f"--config.file={config}",
        f"--storage.tsdb.path={directory / 'data'}",
        f"--web.listen-address={address}",
    ]
    with log.open("ab") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        url = f"http://{address}"
        wait_until_up(url, process, len(targets), log)
        yield url
    finally:
        stop(process)
