"""An analysis to drive in tests: a metrics endpoint the test sets (`Stub`), a WEB check of it (`spec`), and the
steps of a rollout analysed check by check. The `stub` and `providers` fixtures are in tests/conftest.py."""

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from scheduler.providers import Providers
from store.models import AnalysisSpec, MetricCheck, MetricProvider
from tests.scenario import Scenario


class Stub:
    """A metrics endpoint whose answer a test sets: `{"data": {"errorRate": value}}`, or a status, or silence."""

    def __init__(self) -> None:
        self.value: Any = 1.0
        self.status = 200
        self.asked = 0

    def app(self) -> Starlette:
        async def metrics(request: Request) -> Response:
            self.asked += 1
            if self.status != 200:
                return Response("down", status_code=self.status)
            return JSONResponse({"data": {"errorRate": self.value}, "deployment": request.query_params.get("d")})

        return Starlette(routes=[Route("/metrics", metrics)])


def spec(url: str, *, count: int = 3, failure_limit: int = 0, interval: int = 10) -> AnalysisSpec:
    check = MetricCheck("error-rate", MetricProvider.WEB, url=f"{url}/metrics?d={{{{deployment}}}}",
                        json_path="$.data.errorRate", max=2.0)  # fmt: skip
    return AnalysisSpec((check,), interval_seconds=interval, count=count, failure_limit=failure_limit)


async def checks_taken(scenario: Scenario, providers: Providers, n: int, interval: int = 10) -> None:
    """Time moves one interval at a time; each brings one check, which the scheduler takes."""
    for _ in range(n):
        await scenario.shift_time(interval)
        await scenario.tick(providers)


async def first_deploy(scenario: Scenario, providers: Providers, until: str = "READY") -> None:
    """Revision 1 deployed and its analysis, if any, taken check by check until the deployment is `until`."""
    await scenario.deploy()
    await scenario.tick(providers)
    await scenario.healthy(revision=1)
    await scenario.tick(providers)
    for _ in range(20):
        if await scenario.state() == until:
            return
        await checks_taken(scenario, providers, 1)
    raise AssertionError(await scenario.history())


async def green_healthy(scenario: Scenario, providers: Providers) -> None:
    """Revision 2 deployed beside 1, its green routes healthy; a pre-promotion analysis takes its first check."""
    await scenario.deploy()
    await scenario.tick(providers)
    await scenario.healthy(revision=2)
    await scenario.tick(providers)
