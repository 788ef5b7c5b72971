"""A PROMETHEUS check reading HAProxy's own exporter, end to end: real replica processes behind a real HAProxy kept in
step by `switchover haproxy`, a real Prometheus scraping HAProxy's `/metrics` (the README's exporter frontend), and
post-promotion analyses selecting the revision's servers with `{{routes}}` (HAProxy names servers after route ids).
"""

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from scheduler.providers import Providers, Target, prometheus
from store import reads, rollouts
from store.models import AnalysisPhase, AnalysisSpec, MetricCheck, MetricProvider
from tests.haproxy_helpers import haproxy_plane
from tests.prometheus_helpers import running_prometheus
from tests.runtime_helpers import Machine
from tests.scenario import Scenario, blue_green

SERVERS = 'proxy="{{deployment}}", server=~"{{routes}}"'
# HAProxy 2.6's exporter counts answers per server by class: code="1xx" … "5xx", "other".
ERRORS = f'sum(haproxy_server_http_responses_total{{{SERVERS}, code="5xx"}})'
ANSWERS = f"sum(haproxy_server_http_responses_total{{{SERVERS}}})"


async def scraped(db: Any, providers: Providers, url: str, query: str, target: Target, *, at_least: float) -> None:
    """Poll until Prometheus has scraped what the test just caused (it scrapes every second)."""
    deadline = time.monotonic() + 30
    while True:
        reading = await prometheus.measure(providers.http, url, query, target, db=db)
        if reading.value is not None and reading.value >= at_least:
            return
        assert time.monotonic() < deadline, f"Prometheus did not see {query} ≥ {at_least}: {reading.message}"
        await asyncio.sleep(0.2)


async def test_a_check_on_haproxys_per_server_5xx_passes_a_healthy_revision_and_reverts_one_with_errors(
    scenario: Scenario, machine: Machine, database_url: str, tmp_path: Path
) -> None:
    check = MetricCheck("errors", MetricProvider.PROMETHEUS, query=ERRORS, max=0)
    analysis = AnalysisSpec((check,), interval_seconds=10, count=1, initial_delay_seconds=10)
    # No scale-down delay: revision 1 is gone once revision 2 passed, so revision 2 alone is what a revert goes back to.
    strategy = blue_green(post_promotion_analysis=analysis, scale_down_delay_seconds=0)
    await scenario.given_deployment(replicas=1, strategy=strategy)
    deployment = await scenario.deployment()
    await scenario.deploy()
    await machine.until_state("READY")

    async with haproxy_plane(database_url, [deployment.name], metrics=True) as plane:
        with running_prometheus(tmp_path, [(f"127.0.0.1:{plane.haproxy.metrics_port}", {})]) as prometheus_url:
            machine.providers = Providers(prometheus_url=prometheus_url)
            async with httpx.AsyncClient(timeout=10) as client:

                async def promoted(number: int, env: dict[str, str]) -> Target:
                    """Deploy and promote a new revision; returns its target once its answers through HAProxy
                    are in Prometheus."""
                    await scenario.deploy(await scenario.add_revision(env=env))
                    await machine.until_state("DEPLOYING/DEPLOYING_AWAITING_PROMOTION")
                    await rollouts.promote(scenario.db, scenario.id, actor="alice")

                    async def answered_by_it() -> bool:  # `switchover haproxy` follows the promotion's NOTIFY
                        answers = [await client.post(plane.url_for(deployment.name) + "/v1/predict") for _ in range(10)]
                        return all(a.json().get("revision") == number for a in answers)

                    await machine.until(answered_by_it)
                    target = Target(deployment.id, deployment.name, deployment.project_id,
                                    scenario.revisions[number - 1], number, 10)  # fmt: skip
                    for _ in range(20):
                        await client.post(plane.url_for(deployment.name) + "/v1/predict")
                    await scraped(scenario.db, machine.providers, prometheus_url, ANSWERS, target, at_least=30)
                    return target

                async def analysis_of(number: int) -> AnalysisPhase:
                    await scenario.shift_time(10)  # its first check is due

                    async def ended() -> bool:
                        runs = (await reads.analysis_run_pages(scenario.db, [scenario.id]))[scenario.id].items
                        run = runs[0][1]
                        return run.revision_id == scenario.revisions[number - 1] and run.phase != AnalysisPhase.RUNNING

                    await machine.until(ended)
                    [(_, run), *_] = (await reads.analysis_run_pages(scenario.db, [scenario.id]))[scenario.id].items
                    return run.phase

                # Given a healthy revision 2 promoted: its servers answered 2xx only
                await promoted(2, {})
                # Then the check reads 0 5xx over its servers and passes
                assert await analysis_of(2) is AnalysisPhase.SUCCESSFUL

                async def revision_1_gone() -> bool:
                    return not await scenario.live_routes(revision=1)

                await machine.until(revision_1_gone)

                # Given revision 3 answering every other request with a 500, promoted
                bad = await promoted(3, {"REPLICA_ERROR_PERCENT": "50"})
                await scraped(scenario.db, machine.providers, prometheus_url, ERRORS, bad, at_least=1)
                # Then its check fails on a number HAProxy counted, and the scheduler reverts to revision 2
                assert await analysis_of(3) is AnalysisPhase.FAILED

                async def reverted() -> bool:
                    return (await scenario.deployment()).current_revision_id == scenario.revisions[1]

                await machine.until(reverted)
            await machine.providers.aclose()

    history = await scenario.history()
    assert history.index("analysis GIVE_UP") < history.index("revert SUCCESS"), history
    runs = (await reads.analysis_run_pages(scenario.db, [scenario.id]))[scenario.id].items
    measured = (await reads.measurements_of_runs(scenario.db, [runs[0][1].id]))[runs[0][1].id]
    assert measured[-1].passed is False and measured[-1].value is not None and measured[-1].value >= 1
    healthy = (await reads.measurements_of_runs(scenario.db, [runs[1][1].id]))[runs[1][1].id]
    assert [(m.value, m.passed) for m in healthy] == [(0.0, True)]


TARGET = Target("d", "sentiment", "p", "r", 3, 10)


def test_routes_is_an_alternation_of_route_ids_written_per_the_modules_quoting_rules() -> None:
    ids = ["0f6e-a1", "b.c+d"]  # not route ids (uuids), to show the escaping
    assert prometheus.render('{server=~"{{routes}}"}', TARGET, ids) == '{server=~"0f6e-a1|b\\u005c.c\\u005c+d"}'
    assert prometheus.render("{server=~`{{routes}}`}", TARGET, ids) == "{server=~`0f6e-a1|b\\.c\\+d`}"
    assert prometheus.render("{server=~{{routes}}}", TARGET, ids) == '{server=~"0f6e-a1|b\\u005c.c\\u005c+d"}'


async def test_routes_without_a_database_or_for_a_revision_without_routes_gives_no_number(
    scenario: Scenario,
) -> None:
    await scenario.given_deployment(replicas=1, strategy=blue_green())
    revision = await scenario.add_revision()
    target = Target(scenario.id, "x", "p", revision, 1, 10)
    async with httpx.AsyncClient() as http:
        unread = await prometheus.measure(http, "http://127.0.0.1:9", 'up{server=~"{{routes}}"}', target)
        none = await prometheus.measure(http, "http://127.0.0.1:9", 'up{server=~"{{routes}}"}', target, db=scenario.db)
    assert unread.value is None and "route ids" in unread.message
    assert none.value is None and "has no routes" in none.message
