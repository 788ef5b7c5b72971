"""`make run`'s demo runs end to end: a real blue-green rollout with zero failed requests, a bad revision reverted by
its analysis, a drifting one held back by shadow traffic, then cleans up; a terminal's Ctrl-C stops it and every
process it started.

Processes are found by a marker in their environment that only this test's demo passes on (the demo, its services,
their replicas, its embedded PostgreSQL): never by their names, which another checkout's demo shares.
"""

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

MARKER = "SWITCHOVER_TEST_DEMO"


def started_by(marker: str) -> list[psutil.Process]:
    """The running processes that inherited `marker`."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(MARKER) == marker and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.Error:  # gone meanwhile, or not ours to read
            continue
    return found


def kill_all(marker: str) -> None:
    for process in started_by(marker):
        try:
            process.kill()
        except psutil.Error:
            continue


def until(condition: Callable[[], bool], *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not {what} within {within} s"
        time.sleep(0.1)


def demo_env(tmp_path: Path, marker: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "SWITCHOVER_DATA_DIR": str(tmp_path / "data"), MARKER: marker, **extra}


def test_the_demo_rolls_out_revisions_and_reverts_a_bad_one_by_itself(database_url: str, tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    try:
        result = subprocess.run(
            [sys.executable, "-m", "switchover.demo", "--exit", "--api-port", "0", "--proxy-port", "0"],
            env=demo_env(tmp_path, marker, DATABASE_URL=database_url),
            capture_output=True,
            text=True,
            timeout=240,
        )

        assert result.returncode == 0, result.stdout + result.stderr
        assert "requests answered by revision 1" in result.stdout
        assert "requests answered by revision 2" in result.stdout
        assert " 0 failed during the promotions" in result.stdout
        assert "PROMOTED revision 2" in result.stdout and "PROMOTED revision 3" in result.stdout
        assert "REVERTED to revision 2 by itself" in result.stdout
        assert "requests failed by the bad revision 3 itself" in result.stdout
        # Shadow traffic: revision 4 drifts; its agreement holds it back, then it is rolled back, unseen by callers.
        out = result.stdout
        assert "an operator tries to promote revision 4 meanwhile: refused, INVALID_STATE" in out
        [rate] = re.findall(r"revision 4: shadow-agreement FAIL: ([\d.]+) % of \d+ mirrored requests agreed", out)
        assert 90 < float(rate) < 99  # 5 % of its predictions flip
        assert "revision 4 was ROLLED BACK" in out
        assert out.index("PROMOTED revision 3") < out.index("shadow-agreement FAIL") < out.index("ROLLED BACK")
        assert "PROMOTED revision 4" not in out
        pair = r"request: POST /v1/predict .*\n.*blue answer: 200 (.*)\n.*green answer: 200 (.*)"
        disagreements = re.findall(pair, out)
        assert disagreements, out
        for blue, green in disagreements:  # the model's answer differs, the identity fields are ignored
            assert '"revision":2' in blue and '"revision":4' in green
            assert ('"prediction":true' in blue) == ('"prediction":false' in green)
        assert re.search(r"\d+ requests answered by revision 2 while revision 4 was mirrored to, 0 otherwise", out)
        assert started_by(marker) == []
    finally:
        kill_all(marker)


def start_in_its_own_process_group(
    env: dict[str, str], output: Path, sigint: signal.Handlers
) -> subprocess.Popen[bytes]:
    """`make run` as a terminal runs it: a process group of its own (setsid), SIGINT handled as `sigint` says."""

    def in_child() -> None:
        signal.signal(signal.SIGINT, sigint)

    with output.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "switchover.demo", "--api-port", "0", "--proxy-port", "0"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=in_child,
        )


@pytest.mark.parametrize(
    ("sigint", "after"),
    [
        pytest.param(signal.SIG_DFL, "deploying revision 2 beside it", id="in-a-terminal-mid-rollout"),
        # A shell starts a background job with SIGINT ignored; the services handle it anyway, so must the demo.
        pytest.param(signal.SIG_IGN, "Explore further", id="sigint-ignored-while-serving"),
    ],
)
def test_ctrl_c_stops_the_demo_and_every_process_it_started(
    tmp_path: Path, sigint: signal.Handlers, after: str
) -> None:
    marker = uuid.uuid4().hex
    env = demo_env(tmp_path, marker)
    env.pop("DATABASE_URL", None)  # the embedded PostgreSQL, as `make run` uses it
    output = tmp_path / "demo.out"
    demo = start_in_its_own_process_group(env, output, sigint)
    try:
        until(lambda: after in output.read_text(), within=120, what=f"printed {after!r}: {output.read_text()}")
        replicas = [p for p in started_by(marker) if "switchover.replica" in p.cmdline()]
        assert len(replicas) >= 2

        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C: SIGINT to the whole foreground process group

        until(lambda: started_by(marker) == [], within=10, what=f"all gone: {started_by(marker)}")
        assert demo.wait(timeout=5) == 128 + signal.SIGINT
        assert "cleaning up" in output.read_text()
    finally:
        kill_all(marker)
        if demo.poll() is None:
            demo.kill()
            demo.wait()


def test_dataplane_haproxy_runs_the_story_through_a_real_haproxy_and_its_metrics(
    database_url: str, tmp_path: Path
) -> None:
    from tests.haproxy_helpers import ensure_haproxy
    from tests.prometheus_helpers import ensure_prometheus

    ensure_haproxy()
    ensure_prometheus()
    marker = uuid.uuid4().hex
    try:
        result = subprocess.run(
            [sys.executable, "-m", "switchover.demo", "--exit", "--api-port", "0", "--proxy-port", "0"],
            env=demo_env(tmp_path, marker, DATABASE_URL=database_url, DATAPLANE="haproxy"),
            capture_output=True,
            text=True,
            timeout=240,
        )

        out = result.stdout
        assert result.returncode == 0, out + result.stderr
        [directory] = re.findall(r"data plane: HAProxy at http://127\.0\.0\.1:\d+ .*config in (\S+)\);", out)
        assert "10 requests through HAProxy: {'revision 1': 10}" in out
        # The analyses read HAProxy's per-server counts through Prometheus: revision 2 passes, revision 3 fails
        assert "analysis of revision 2: success-rate pass: Prometheus answered 100" in out
        assert re.search(r"analysis of revision 3: success-rate FAIL: Prometheus answered (7|8)\d", out), out
        assert "REVERTED to revision 2 by itself" in out and " 0 failed during the promotions" in out
        # Shadow traffic: through the built-in proxy, which says so
        assert "this chapter's requests go through switchover proxy" in out and "revision 4 was ROLLED BACK" in out
        # Every answer the demo had from the data plane, HAProxy gave (and at most the few the demo's stops cut short
        # besides: HAProxy may still have answered those)
        [(answered, had)] = re.findall(r"HAProxy answered (\d+) requests for sentiment-demo .* had (\d+) answers", out)
        assert int(had) > 100 and 0 <= int(answered) - int(had) <= 8
        assert started_by(marker) == [] and not Path(directory).exists()
    finally:
        kill_all(marker)
