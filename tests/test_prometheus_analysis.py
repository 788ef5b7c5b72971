"""A post-promotion analysis with a PROMETHEUS check, end to end: real replica processes, a real `switchover proxy`
carrying the traffic, a real Prometheus scraping the proxy's /metrics, and the scheduler reverting by itself."""

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scheduler.providers import Providers, Target, prometheus
from store import reads, rollouts
from store.models import AnalysisPhase, AnalysisSpec, MetricCheck, MetricProvider
from tests.prometheus_helpers import running_prometheus
from tests.runtime_helpers import Machine
from tests.scenario import Scenario, blue_green

ERRORS = (
    'sum(switchover_proxy_requests_total{deployment="{{deployment}}", revision="{{revision}}", code="500"}) '
    "or vector(0)"
)


@pytest.fixture
def proxy(database_url: str, tmp_path: Path) -> Iterator[str]:
    """`switchover proxy` in a process of its own (Prometheus scrapes it while the test waits)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": database_url, "SWITCHOVER_PROXY_FLUSH_SECONDS": "0.5"}
    with (tmp_path / "proxy.log").open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "switchover", "proxy", "--port", str(port)], env=env,
                                   stdout=log, stderr=log)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "proxy.log").read_text()
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=15)


async def test_a_prometheus_check_on_the_proxys_metrics_reverts_a_bad_revision(
    scenario: Scenario, machine: Machine, proxy: str, tmp_path: Path
) -> None:
    check = MetricCheck("errors", MetricProvider.PROMETHEUS, query=ERRORS, max=0)
    analysis = AnalysisSpec((check,), interval_seconds=10, count=2, initial_delay_seconds=10)
    await scenario.given_deployment(replicas=1, strategy=blue_green(post_promotion_analysis=analysis))
    deployment = await scenario.deployment()
    await scenario.deploy()
    await machine.until_state("READY")
    await scenario.deploy(await scenario.add_revision(env={"REPLICA_ERROR_PERCENT": "50"}))
    await machine.until_state("DEPLOYING/DEPLOYING_AWAITING_PROMOTION")

    with running_prometheus(tmp_path, [(proxy, {})]) as prometheus_url:
        machine.providers = Providers(prometheus_url=prometheus_url)
        await rollouts.promote(scenario.db, scenario.id, actor="alice")
        async with httpx.AsyncClient(timeout=10) as client:

            async def revision_2_answered() -> bool:  # the proxy follows the promotion within a second
                answers = [await client.post(f"http://{proxy}/{deployment.name}/v1/predict") for _ in range(10)]
                return any(a.status_code == 500 for a in answers)

            await machine.until(revision_2_answered)
        target = Target(deployment.id, deployment.name, deployment.project_id, scenario.revisions[1], 2, 10)
        deadline = time.monotonic() + 30
        while (await prometheus.measure(machine.providers.http, prometheus_url, ERRORS, target)).value in (None, 0):
            assert time.monotonic() < deadline, "Prometheus never scraped the 500s"
            await asyncio.sleep(0.2)

        await scenario.shift_time(10)  # the first check is due

        async def reverted() -> bool:
            return (await scenario.deployment()).current_revision_id == scenario.revisions[0]

        await machine.until(reverted)
        await machine.providers.aclose()

    history = await scenario.history()
    assert "analysis GIVE_UP" in history and history[-1] == "revert SUCCESS", history
    [(_, run)] = (await reads.analysis_run_pages(scenario.db, [scenario.id]))[scenario.id].items
    measured = (await reads.measurements_of_runs(scenario.db, [run.id]))[run.id]
    assert run.phase is AnalysisPhase.FAILED  # a number Prometheus gave, not an error
    assert measured[-1].passed is False and measured[-1].value is not None and measured[-1].value >= 1
