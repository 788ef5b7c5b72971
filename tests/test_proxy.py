"""The traffic proxy: only ACTIVE routes get requests, and a load across a promotion sees no failure."""

import asyncio
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import psutil
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from store import rollouts, route_health
from store.database import open_database
from store.models import RouteStatus
from switchover.proxy import create_proxy
from switchover.proxy_headers import end_to_end, forwarded
from tests.dataplanes import builtin_proxy
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


# --- proxy rules (SPEC §7) ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "kept"),
    [
        ([(b"Connection", b"keep-alive, X-Hop"), (b"X-Hop", b"1"), (b"X-End", b"2")], [(b"x-end", b"2")]),
        ([(b"Keep-Alive", b"timeout=5"), (b"TE", b"trailers"), (b"Trailer", b"X-Sum"), (b"Upgrade", b"h2c")], []),
        ([(b"Transfer-Encoding", b"chunked"), (b"Proxy-Authorization", b"Basic x"), (b"Proxy-Foo", b"1")], []),
        ([(b"Content-Length", b"5"), (b"Authorization", b"Bearer t")],
         [(b"content-length", b"5"), (b"authorization", b"Bearer t")]),
    ],
    ids=["connection-names", "hop-by-hop", "proxy-and-encoding", "end-to-end"],
)  # fmt: skip
def test_hop_by_hop_headers_stay_on_their_hop(headers: list[tuple[bytes, bytes]], kept: list) -> None:
    assert end_to_end(headers) == kept


@pytest.mark.parametrize(
    ("earlier", "expected"),
    [([], b"10.1.2.3"), ([b"192.0.2.1"], b"192.0.2.1, 10.1.2.3"), ([b"192.0.2.1", b"198.51.100.7"],
                                                                     b"192.0.2.1, 198.51.100.7, 10.1.2.3")],
)  # fmt: skip
def test_the_proxys_peer_is_appended_to_x_forwarded_for(earlier: list[bytes], expected: bytes) -> None:
    headers = [(b"x-forwarded-for", value) for value in earlier] + [(b"x-forwarded-proto", b"ftp")]
    out = forwarded(headers, peer="10.1.2.3", scheme="https")
    assert [v for n, v in out if n == b"x-forwarded-for"] == [expected]
    assert [v for n, v in out if n == b"x-forwarded-proto"] == [b"https"]


def echo_app() -> Starlette:
    async def echo(request: Request) -> Response:
        body = await request.body()
        seen = {"method": request.method, "path": request.url.path, "query": request.url.query,
                "headers": [[k, v] for k, v in request.headers.items()], "body": body.decode()}  # fmt: skip
        return JSONResponse(seen, headers={"connection": "x-upstream-hop", "x-upstream-hop": "1", "x-end": "yes"})

    return Starlette(routes=[Route("/{rest:path}", echo, methods=["GET", "POST", "PUT"])])


async def test_a_route_refusing_connections_costs_no_request_and_headers_follow_the_proxy_rules(
    scenario: Scenario, database_url: str
) -> None:
    await scenario.given_deployment(replicas=2, strategy=blue_green())
    name = (await scenario.deployment()).name
    await scenario.deploy()
    await scenario.tick()
    with socket.socket() as s:  # a port nobody listens on: connections are refused
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    # `switchover proxy` as run (the server's own X-Forwarded-For handling is off there).
    plane = builtin_proxy(database_url)
    async with serving(echo_app()) as echo, plane as p, httpx.AsyncClient(timeout=10) as client:
        live, refusing = await scenario.live_routes(revision=1)
        for route, endpoint in ((live, echo), (refusing, dead)):
            await route_health.report_route_health(scenario.db, route.id, RouteStatus.HEALTHY, endpoint_url=endpoint,
                                                   actor="orchestrator")  # fmt: skip
        await scenario.tick()
        assert await scenario.state() == "READY"

        url = f"{p.url_for(name)}/some/path%2Fencoded?q=1&q=2"
        headers = {"connection": "x-hop", "x-hop": "1", "keep-alive": "timeout=5", "te": "trailers",
                   "proxy-authorization": "Basic eA==", "x-forwarded-for": "192.0.2.1", "authorization": "Bearer t"}

        async def followed() -> bool:
            return (await client.post(url, content=b"first", headers=headers)).status_code == 200

        deadline = time.monotonic() + 10
        while not await followed():  # the proxy follows the committed change within a second
            assert time.monotonic() < deadline
        answers = [await client.post(url, content=b"hello", headers=headers) for _ in range(40)]

    assert {(a.status_code, a.headers["x-switchover-route"]) for a in answers} == {(200, live.id)}
    seen = answers[0].json()
    got = dict(seen["headers"])
    assert (seen["method"], seen["path"], seen["query"], seen["body"]) == ("POST", "/some/path/encoded", "q=1&q=2",
                                                                           "hello")  # fmt: skip
    assert got["x-forwarded-for"] == "192.0.2.1, 127.0.0.1" and got["x-forwarded-proto"] == "http"
    assert got["authorization"] == "Bearer t"
    assert not {"x-hop", "keep-alive", "te", "proxy-authorization"} & set(got)
    assert "x-upstream-hop" not in answers[0].headers and answers[0].headers["x-end"] == "yes"


async def test_with_two_workers_two_proxy_processes_share_the_port_and_each_follows_the_table(
    scenario: Scenario, database_url: str
) -> None:
    # Given a READY deployment whose one route answers
    await scenario.given_deployment(replicas=1, strategy=blue_green())
    name = (await scenario.deployment()).name
    await scenario.deploy()
    await scenario.tick()
    async with serving(echo_app()) as echo:
        [route] = await scenario.live_routes(revision=1)
        await route_health.report_route_health(scenario.db, route.id, RouteStatus.HEALTHY, endpoint_url=echo,
                                               actor="orchestrator")  # fmt: skip
        await scenario.tick()

        # When `switchover proxy` runs with SWITCHOVER_PROXY_WORKERS=2
        plane = builtin_proxy(database_url, env={"SWITCHOVER_PROXY_WORKERS": "2"})
        async with plane as p, httpx.AsyncClient(timeout=10) as client:
            children = psutil.Process(p.process.pid).children()  # type: ignore[attr-defined]
            # uvicorn's workers are spawned processes (multiprocessing also starts a resource tracker of its own)
            workers = [c for c in children if "spawn_main" in " ".join(c.cmdline())]

            # Then two worker processes serve, and every request on fresh connections is answered by the route
            answers = [await client.get(f"{p.url_for(name)}/x", headers={"connection": "close"}) for _ in range(40)]

    assert len(workers) == 2
    assert {(a.status_code, a.headers["x-switchover-route"]) for a in answers} == {(200, route.id)}
