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
