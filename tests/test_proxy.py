"""The traffic proxy: only ACTIVE routes get requests, and a load across a promotion sees no failure."""

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest

from store import rollouts
from store.database import open_database
from switchover.proxy import create_proxy
from tests.live_server import serving
from tests.runtime_helpers import Machine
from tests.scenario import Scenario, blue_green


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[str]:
    async with serving(create_proxy(open_database(database_url), database_url), lifespan="on") as url:
        yield url


async def answers(client: httpx.AsyncClient, url: str, count: int) -> Counter[int | str]:
    seen: Counter[int | str] = Counter()
    for _ in range(count):
        response = await client.post(url, content=b"hello")
        seen[response.json()["revision"] if response.status_code == 200 else f"HTTP {response.status_code}"] += 1
    return seen


async def test_only_active_routes_get_traffic_and_a_promotion_under_load_loses_nothing(
    scenario: Scenario, machine: Machine, proxy: str
) -> None:
    await scenario.given_deployment(replicas=2, strategy=blue_green(scale_down_delay_seconds=1))
    name = (await scenario.deployment()).name
    url = f"{proxy}/{name}/v1/predict"
    await scenario.deploy()
    await machine.until_state("READY")
    await scenario.deploy()
    await machine.until_state("DEPLOYING/DEPLOYING_AWAITING_PROMOTION")

    async with httpx.AsyncClient(timeout=10) as client:
        assert await answers(client, url, 40) == Counter({1: 40})  # green is healthy but takes nothing

        stop = asyncio.Event()
        seen: Counter[int | str] = Counter()

        async def load() -> None:
            while not stop.is_set():
                seen.update(await answers(client, url, 1))

        loaders = [asyncio.create_task(load()) for _ in range(4)]
        await asyncio.sleep(0.5)
        await rollouts.promote(scenario.db, scenario.id, actor="alice")
        await asyncio.sleep(0.5)

        async def blue_gone() -> bool:
            return await scenario.live_routes(revision=1) == []

        await machine.until(blue_gone)  # the blue replicas are stopped while the load goes on
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*loaders)

        assert set(seen) == {1, 2}, seen  # every request answered, by revision 1 and then by revision 2
        assert await answers(client, url, 20) == Counter({2: 20})


async def test_an_unknown_deployment_is_a_clear_503(proxy: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{proxy}/nobody-here/v1/predict")
    assert response.status_code == 503
    assert "nobody-here" in response.json()["error"]


async def test_a_preview_request_reaches_only_the_healthy_routes_of_the_revision_being_deployed(
    scenario: Scenario, machine: Machine, proxy: str
) -> None:
    await scenario.given_deployment(replicas=2, strategy=blue_green())
    url = f"{proxy}/{(await scenario.deployment()).name}/v1/predict"
    preview = {"x-switchover-preview": "1"}
    await scenario.deploy()
    await machine.until_state("READY")

    async with httpx.AsyncClient(timeout=10) as client:
        nothing = await client.post(url, content=b"x", headers=preview)  # nothing being deployed
        await scenario.deploy()
        await machine.until_state("DEPLOYING/DEPLOYING_AWAITING_PROMOTION")

        async def table_reloaded() -> bool:
            return (await client.post(url, content=b"x", headers=preview)).status_code == 200

        await machine.until(table_reloaded)  # the proxy follows the database within a second
        previewed: Counter[int | str] = Counter()
        for _ in range(20):
            previewed.update(await answers_with(client, url, preview))
        plain = await answers(client, url, 20)

    assert nothing.status_code == 503 and "preview" in nothing.json()["error"]
    assert previewed == Counter({2: 20})  # green, before promotion
    assert plain == Counter({1: 20})  # everyone else still gets blue


async def answers_with(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> Counter[int | str]:
    response = await client.post(url, content=b"hello", headers=headers)
    return Counter([response.json()["revision"] if response.status_code == 200 else f"HTTP {response.status_code}"])
