"""The operator CLI against a real server: output, and exit codes a CI job can rely on."""

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator

import pytest

from store import rollouts
from tests.scenario import Scenario, blue_green


async def switchover(*args: str, url: str) -> tuple[int, str]:
    env = {**os.environ, "SWITCHOVER_URL": url, "COLUMNS": "200"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "switchover", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode()


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": database_url}
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "switchover", "serve", "--insecure", "--port", str(port), env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        for _ in range(300):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        yield url
    finally:
        server.terminate()
        await server.wait()


async def test_a_rollout_driven_from_the_command_line(scenario: Scenario, api: str) -> None:
    await scenario.given_deployment(replicas=2, strategy=blue_green(scale_down_delay_seconds=60))
    name = (await scenario.deployment()).name
    await scenario.ready_on_first_revision()

    code, out = await switchover("deployments", url=api)
    assert code == 0 and name in out and "READY" in out

    code, out = await switchover("deploy", name, "--image", "model:2", "--env", "THREADS=4", url=api)
    assert (code, out.strip()) == (0, f"deploying revision 2 (model:2) to {name}")
    scenario.revisions.append((await scenario.deployment()).deploying_revision_id or "")

    code, out = await switchover("promote", name, url=api)
    assert code == 1 and "INVALID_STATE" in out  # green is not healthy yet

    waiter = asyncio.create_task(
        switchover("status", name, "--wait-for", "awaiting-promotion", "--timeout", "30", url=api)
    )
    await scenario.tick()
    await scenario.healthy(revision=2)
    await scenario.tick()
    code, out = await waiter
    assert code == 0, out

    code, out = await switchover("status", name, url=api)
    assert "DEPLOYING/AWAITING_PROMOTION" in out and "waiting for manual promotion" in out

    code, out = await switchover("promote", name, "--expect-revision", "1", url=api)
    assert code == 1 and "CONFLICT" in out
    code, out = await switchover("promote", name, "--expect-revision", "2", url=api)
    assert (code, out.strip()) == (0, f"promoted revision 2 of {name}: 2 routes active, 2 draining")

    code, out = await switchover("revert", name, "--reason", "latency", url=api)
    assert (code, out.strip()) == (0, f"reverted {name}: revision 1 serves again")
    assert await scenario.active_revisions() == [1, 1]


async def test_waiting_times_out_with_exit_code_3(scenario: Scenario, api: str) -> None:
    await scenario.given_deployment(replicas=1)
    name = (await scenario.deployment()).name

    code, out = await switchover("status", name, "--wait-for", "ready", "--timeout", "1", url=api)

    assert code == 3 and "timed out" in out


async def test_a_rollout_that_ends_elsewhere_fails_the_wait(scenario: Scenario, api: str) -> None:
    await scenario.given_deployment(replicas=1)
    name = (await scenario.deployment()).name
    await scenario.ready_on_first_revision()
    await scenario.deploy()
    waiter = asyncio.create_task(
        switchover("status", name, "--wait-for", "awaiting-promotion", "--timeout", "30", url=api)
    )
    await rollouts.begin_rollback(scenario.db, scenario.id, actor="bob")
    await scenario.tick()

    code, out = await waiter
    assert code == 1 and "without reaching awaiting-promotion" in out


async def test_unknown_names_and_unreachable_servers_have_their_own_exit_codes(api: str) -> None:
    code, out = await switchover("status", "nobody", url=api)
    assert code == 1 and "NOT_FOUND" in out
    code, out = await switchover("deployments", url="http://127.0.0.1:9/graphql")
    assert code == 4 and "UNREACHABLE" in out


def test_bad_usage_exits_with_2() -> None:
    import subprocess

    result = subprocess.run([sys.executable, "-m", "switchover", "promote"], capture_output=True, text=True)
    assert result.returncode == 2


async def test_status_shows_the_analysis_and_promote_can_skip_it(scenario: Scenario, api: str) -> None:
    from scheduler.providers import Providers
    from tests.analysis_helpers import Stub, spec
    from tests.live_server import serving

    stub, providers = Stub(), Providers(allow_loopback=True)
    async with serving(stub.app()) as metrics:
        await scenario.given_deployment(replicas=1, strategy=blue_green(pre_promotion_analysis=spec(metrics)))
        name = (await scenario.deployment()).name
        await scenario.deploy()
        for _ in range(3):  # the first deploy's analysis: three checks, ten seconds apart
            await scenario.tick(providers)
            await scenario.healthy(revision=1)
            await scenario.shift_time(10)
        await scenario.tick(providers)
        await scenario.deploy()
        await scenario.tick(providers)
        await scenario.healthy(revision=2)
        await scenario.tick(providers)  # the pre-promotion analysis of revision 2 starts and takes a check
        await providers.aclose()

    status_code, status = await switchover("status", name, url=api)
    refused_code, refused = await switchover("promote", name, url=api)
    skipped_code, skipped = await switchover("promote", name, "--skip-analysis", url=api)

    assert status_code == 0 and "analysis: pre-promotion of revision 2 RUNNING (1 passed, 0 failed)" in status, status
    assert "error-rate: pass" in status
    assert refused_code == 1 and "INVALID_STATE" in refused and "skipAnalysis" in refused, refused
    assert skipped_code == 0 and "promoted revision 2" in skipped, skipped


async def test_status_shows_a_canary_step_and_promote_full_takes_it_to_100_percent(
    scenario: Scenario, api: str
) -> None:
    from tests.test_canary import canary_on_revision_2, pause, step_healthy, weight

    await canary_on_revision_2(scenario, 2, weight(50), pause(), weight(100))
    await step_healthy(scenario)  # 50 %, then the pause waits for a person
    name = (await scenario.deployment()).name

    status_code, status = await switchover("status", name, url=api)
    full_code, full = await switchover("promote", name, "--full", url=api)
    await scenario.tick()
    await step_healthy(scenario)

    assert status_code == 0 and "canary: step 2, 50 % of the traffic on the new revision" in status, status
    assert full_code == 0 and "going to 100 %" in full, full
    assert await scenario.state() == "READY" and await scenario.active_revisions() == [2, 2]
