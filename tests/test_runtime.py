"""The process runtime and HTTP health checks: real replica processes, real probes."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from scheduler.process_runtime import ProcessRuntime, replica_alive
from scheduler.runner import run_once
from store import rollouts
from store.models import RouteStatus, RouteTrafficStatus
from tests.runtime_helpers import Machine
from tests.scenario import Scenario, blue_green


def pid_of(route: Any) -> int:
    return int(route.runtime_ref.removeprefix("pid:"))


async def test_a_route_runs_as_a_process_becomes_healthy_by_probes_and_stops_on_drain(
    scenario: Scenario, machine: Machine
) -> None:
    await scenario.given_deployment(replicas=1, strategy=blue_green(scale_down_delay_seconds=0))
    await scenario.deploy()
    await machine.until_state("READY")
    [blue] = await scenario.routes(revision=1)
    assert blue.endpoint_url is not None and blue.endpoint_url.startswith("http://127.0.0.1:")
    async with httpx.AsyncClient() as client:
        answer = (await client.post(f"{blue.endpoint_url}/v1/predict", content=b"x")).json()
    assert (answer["image"], answer["revision"], answer["route"]) == ("model:1", 1, blue.id)
    history = await scenario.history()
    assert "route_health SUCCESS" in history  # PROVISIONING -> HEALTHY came from a probe

    await scenario.deploy()
    await machine.until_state("DEPLOYING/DEPLOYING_AWAITING_PROMOTION")
    await rollouts.promote(scenario.db, scenario.id, actor="alice")

    async def blue_stopped() -> bool:
        [route] = await scenario.routes(revision=1)
        return route.status is RouteStatus.TERMINATED

    await machine.until(blue_stopped)
    assert not replica_alive(pid_of(blue), blue.id)
    [green] = await scenario.routes(revision=2)
    async with httpx.AsyncClient() as client:
        assert (await client.post(f"{green.endpoint_url}/v1/predict", content=b"x")).json()["revision"] == 2


async def test_a_replica_that_fails_to_start_is_retried_then_the_rollout_rolls_back(
    scenario: Scenario, machine: Machine
) -> None:
    await scenario.given_deployment(replicas=1, strategy=blue_green(max_retries=1))
    await scenario.deploy()
    await machine.until_state("READY")
    broken = await scenario.add_revision(env={"REPLICA_FAIL_TO_START": "1"})
    await scenario.deploy(broken)

    await machine.until_state("READY")

    history = await scenario.history()
    assert "provision GIVE_UP PROVISIONING -> ROLLING_BACK" in history
    assert (await scenario.deployment()).current_revision_id == scenario.revisions[0]
    assert await scenario.active_revisions() == [1]


async def test_a_replica_that_dies_becomes_unhealthy_loses_its_traffic_then_is_restarted(
    scenario: Scenario, machine: Machine
) -> None:
    await scenario.given_deployment(replicas=2)
    await scenario.deploy()
    await machine.until_state("READY")
    first, second = await scenario.routes(revision=1)

    psutil.Process(pid_of(first)).kill()

    async def reported() -> bool:
        return (await scenario.routes(revision=1))[0].status is RouteStatus.UNHEALTHY

    await machine.until(reported)
    await run_once(scenario.db)
    assert [r.id for r in await scenario.routes(traffic=RouteTrafficStatus.ACTIVE)] == [second.id]

    async def serving_again() -> bool:
        return len(await scenario.routes(traffic=RouteTrafficStatus.ACTIVE)) == 2

    await machine.until(serving_again)
    restarted = (await scenario.routes(revision=1))[0]
    assert restarted.id == first.id and restarted.runtime_ref != first.runtime_ref
    assert restarted.status is RouteStatus.HEALTHY


async def test_a_restarted_runtime_adopts_running_replicas_instead_of_starting_them_again(
    scenario: Scenario, machine: Machine
) -> None:
    await scenario.given_deployment(replicas=2)
    await scenario.deploy()
    await machine.until_state("READY")
    before = {r.id: r.runtime_ref for r in await scenario.routes()}

    restarted = ProcessRuntime(scenario.db)  # a new scheduler process knows nothing but the database
    await restarted.run_once()
    await restarted.run_once()

    after = await scenario.routes()
    assert {r.id: r.runtime_ref for r in after} == before
    assert [r.status for r in after] == [RouteStatus.HEALTHY, RouteStatus.HEALTHY]
    assert restarted.children == {}


def start_scheduler(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "switchover", "scheduler"], env=env, stdout=out, stderr=out)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_a_scheduler_told_to_stop_leaves_its_replicas_serving_for_the_next_one_to_adopt(
    scenario: Scenario, database_url: str, tmp_path: Path, signum: signal.Signals
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SWITCHOVER_RUNTIME": "process",
        "SWITCHOVER_POLL_INTERVAL": "0.1",
        "SWITCHOVER_HEALTH_INTERVAL": "0.2",
        "SWITCHOVER_STOP_GRACE": "2",
    }
    schedulers = [start_scheduler(env, tmp_path / "scheduler.log")]
    started: list[tuple[int, str]] = []
    try:
        await scenario.given_deployment(replicas=2)
        await scenario.deploy()
        await until_state(scenario, "READY")
        blue = {r.id: r.runtime_ref for r in await scenario.routes()}
        started = [(pid_of(r), r.id) for r in await scenario.routes()]

        schedulers[0].send_signal(signum)
        assert await asyncio.to_thread(schedulers[0].wait, 15) == 0
        assert all(replica_alive(pid, route_id) for pid, route_id in started)  # a restart is no outage

        schedulers.append(start_scheduler(env, tmp_path / "scheduler.log"))
        await scenario.deploy()  # work that takes the new scheduler's runtime through many passes
        await until_state(scenario, "DEPLOYING/DEPLOYING_AWAITING_PROMOTION")
        started += [(pid_of(r), r.id) for r in await scenario.routes(revision=2)]
        kept = await scenario.routes(revision=1)
        assert {r.id: r.runtime_ref for r in kept} == blue  # adopted, not restarted
        assert [(r.status, r.traffic_status) for r in kept] == [(RouteStatus.HEALTHY, RouteTrafficStatus.ACTIVE)] * 2
    finally:
        for scheduler in schedulers:
            if scheduler.poll() is None:
                scheduler.kill()
                scheduler.wait()
        for pid, route_id in started:  # never leave a replica behind, whatever failed
            if replica_alive(pid, route_id):
                psutil.Process(pid).kill()


async def until_state(scenario: Scenario, state: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while await scenario.state() != state:
        assert time.monotonic() < deadline, await scenario.history()
        await asyncio.sleep(0.1)
