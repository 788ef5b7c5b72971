"""Races: concurrent promotions, and scheduler processes racing each other and manual promotions."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from store import reads, rollouts
from store.errors import Conflict, InvalidState
from store.models import DeploymentLifecycle, RouteStatus
from tests import invariants
from tests.graphql import gql
from tests.scenario import Scenario, blue_green

PROMOTE = """
mutation($id: ID!) { promoteDeployment(input: {deploymentId: $id}) { deployment { lifecycle } promotedRoutes { id } } }
"""


async def test_twenty_concurrent_promotions_switch_exactly_once(scenario: Scenario, client: Any, db: Any) -> None:
    await scenario.given_deployment(replicas=3)
    await scenario.awaiting_promotion_of_revision_2()

    bodies = await asyncio.gather(*(gql(client, PROMOTE, {"id": scenario.id}) for _ in range(20)))

    succeeded = [b for b in bodies if "errors" not in b]
    refused = [b["errors"][0]["extensions"]["code"] for b in bodies if "errors" in b]
    assert len(succeeded) == 1
    assert refused == ["INVALID_STATE"] * 19
    assert await scenario.active_revisions() == [2, 2, 2]
    assert [line for line in await scenario.history() if line.startswith("promote")] == [
        "promote SUCCESS AWAITING_PROMOTION -> READY",
        "promote SUCCESS AWAITING_PROMOTION -> READY",
    ]


def start_scheduler(database_url: str, log: Path, *, poll_interval: float = 0.2) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": database_url, "SWITCHOVER_POLL_INTERVAL": str(poll_interval)}
    with log.open("ab") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "switchover", "scheduler"], env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )


@pytest.fixture
def schedulers(database_url: str, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    processes = [start_scheduler(database_url, tmp_path / f"scheduler-{i}.log") for i in range(2)]
    try:
        yield processes
    finally:
        for p in processes:
            p.send_signal(signal.SIGTERM)
        for p in processes:
            p.wait(timeout=20)


async def drive(db: Any, scenarios: list[Scenario], revision: int, deadline_s: float = 60) -> None:
    """Act as orchestrator and impatient operators until every deployment serves `revision`."""
    deadline = time.monotonic() + deadline_s
    while True:
        done = 0
        for s in scenarios:
            d = await s.deployment()
            if d.lifecycle is DeploymentLifecycle.READY and d.current_revision_id == s.revisions[revision - 1]:
                done += 1
                continue
            await s.report(RouteStatus.HEALTHY, revision=revision)
            if d.sub_step is not None and d.sub_step.value == "DEPLOYING_AWAITING_PROMOTION":
                try:
                    await rollouts.promote(db, s.id, actor="operator")
                except (InvalidState, Conflict):
                    pass  # the scheduler (or the other operator) was first
        if done == len(scenarios):
            return
        assert time.monotonic() < deadline, f"{done} of {len(scenarios)} deployments done in {deadline_s} s"
        await asyncio.sleep(0.05)


async def test_two_schedulers_and_manual_promotions_race_over_fifty_deployments(
    db: Any, schedulers: list[subprocess.Popen[bytes]]
) -> None:
    scenarios = []
    for i in range(50):
        s = Scenario(db)
        await s.given_deployment(replicas=2, strategy=blue_green(auto_promote=i % 2 == 0, promote_delay_seconds=0))
        await s.add_revision()
        await s.add_revision()
        scenarios.append(s)

    for s in scenarios:
        await s.deploy(s.revisions[0])
    await drive(db, scenarios, revision=1)
    for s in scenarios:
        await s.deploy(s.revisions[1])
    await drive(db, scenarios, revision=2)

    assert all(p.poll() is None for p in schedulers), "a scheduler died"
    await invariants.check(db)
    for s in scenarios:
        history = await s.history()
        assert history.count("promote SUCCESS AWAITING_PROMOTION -> READY") == 2, history
        assert sorted(await s.active_revisions()) == [2, 2]
        deployment = (await reads.deployments_by_ids(db, [s.id]))[s.id]
        assert deployment.deploying_revision_id is None


async def test_a_scheduler_wakes_on_notify_and_stops_cleanly_on_sigterm(
    scenario: Scenario, database_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "scheduler.log"
    process = start_scheduler(database_url, log, poll_interval=60)
    try:
        await scenario.given_deployment(replicas=2)
        await asyncio.sleep(0)  # the polling interval is a minute: only a notification can wake it in time
        deadline = time.monotonic() + 15  # generous for process start-up; the reaction itself is milliseconds
        await scenario.deploy()
        while len(await scenario.routes()) < 2:
            assert time.monotonic() < deadline, "scheduler did not react to the deploy"
            assert process.poll() is None, log.read_text()
            await asyncio.sleep(0.05)
        started = time.monotonic()
        await scenario.healthy(revision=1)
        while await scenario.state() != "READY":
            assert time.monotonic() - started < 5, "scheduler did not react to the health reports"
            await asyncio.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
