"""Metric analysis of blue-green rollouts (SPEC §6): runs as scheduler steps, WEB checks against a real HTTP server,
pre-promotion analysis that gates the promotion, post-promotion analysis that reverts it, and bad specs refused."""

import time
from typing import Any

import httpx
import pytest

from scheduler import analysis as scheduler_analysis
from scheduler.providers import Providers
from store import analysis, deployments, reads, rollouts
from store.errors import Conflict
from store.models import AnalysisPhase, AnalysisSpec, RouteStatus
from tests.analysis_helpers import Stub, checks_taken, first_deploy, green_healthy, spec
from tests.graphql import error_code, gql
from tests.scenario import Scenario, blue_green
from tests.state import snapshot


async def runs(scenario: Scenario) -> list[Any]:
    page = (await reads.analysis_run_pages(scenario.db, [scenario.id]))[scenario.id]
    return [run for _, run in page.items]


# --- pre-promotion ---------------------------------------------------------------------------------------------


async def test_a_passing_pre_promotion_analysis_lets_auto_promotion_happen(
    scenario: Scenario, stub: tuple[Stub, str], providers: Providers
) -> None:
    _, url = stub
    strategy = blue_green(auto_promote=True, pre_promotion_analysis=spec(url))
    await scenario.given_deployment(replicas=2, strategy=strategy)
    await first_deploy(scenario, providers)  # a first deploy is analysed too

    await green_healthy(scenario, providers)
    assert await scenario.state() == "DEPLOYING/DEPLOYING_AWAITING_PROMOTION"  # 1 of 3 checks: not promoted
    await checks_taken(scenario, providers, 2)

    assert await scenario.state() == "READY"
    assert await scenario.active_revisions() == [2, 2]
    [latest, first] = await runs(scenario)
    assert (latest.phase, latest.passed, latest.failed) == (AnalysisPhase.SUCCESSFUL, 3, 0)
    assert first.phase is AnalysisPhase.SUCCESSFUL
    assert (await scenario.history())[-3:] == ["analysis SUCCESS", "analysis SUCCESS",
                                               "promote SUCCESS AWAITING_PROMOTION -> READY"]  # fmt: skip


async def test_a_failing_pre_promotion_analysis_rolls_back_and_blue_keeps_serving(
    scenario: Scenario, stub: tuple[Stub, str], providers: Providers
) -> None:
    metrics, url = stub
    await scenario.given_deployment(replicas=2, strategy=blue_green(pre_promotion_analysis=spec(url, failure_limit=1)))
    await first_deploy(scenario, providers)
    metrics.value = 7.5  # outside max 2.0

    await green_healthy(scenario, providers)  # the first check fails
    assert await scenario.state() == "DEPLOYING/DEPLOYING_AWAITING_PROMOTION"  # one failure is tolerated
    await checks_taken(scenario, providers, 1)

    assert await scenario.state() == "READY"
    assert await scenario.active_revisions() == [1, 1]
    [run, _] = await runs(scenario)
    assert (run.phase, run.failed) == (AnalysisPhase.FAILED, 2)
    history = await scenario.history()
    assert "analysis NEED_RETRY" in history and "analysis GIVE_UP" in history
    assert history[-2:] == [
        "promote GIVE_UP AWAITING_PROMOTION -> ROLLING_BACK",
        "rollback SUCCESS ROLLING_BACK -> READY",
    ]
    measurements = (await reads.measurements_of_runs(scenario.db, [run.id]))[run.id]
    assert [(m.value, m.passed) for m in measurements][-2:] == [(7.5, False), (7.5, False)]


@pytest.mark.parametrize("fault", ["status", "not-a-number", "unreachable"])
async def test_a_provider_that_gives_no_number_ends_the_run_as_error_never_as_a_pass(
    scenario: Scenario, stub: tuple[Stub, str], providers: Providers, fault: str
) -> None:
    metrics, url = stub
    if fault == "unreachable":
        url = "http://127.0.0.1:9"  # discard port: nothing listens
    await scenario.given_deployment(
        replicas=1, strategy=blue_green(max_retries=2, pre_promotion_analysis=spec(url, count=1))
    )
    metrics.status, metrics.value = (503, 1.0) if fault == "status" else (200, "soon")
    await first_deploy(scenario, providers, until="PENDING")

    [run] = await runs(scenario)
    assert (run.phase, run.passed, run.errors) == (AnalysisPhase.ERROR, 0, 2)
    assert await scenario.state() == "PENDING"  # a first deploy with nothing to fall back to
    measurements = (await reads.measurements_of_runs(scenario.db, [run.id]))[run.id]
    assert [m.passed for m in measurements] == [None, None]


async def test_a_manual_promotion_waits_for_the_analysis_unless_it_is_skipped(
    scenario: Scenario, stub: tuple[Stub, str], providers: Providers, client: httpx.AsyncClient
) -> None:
    _, url = stub
    await scenario.given_deployment(replicas=1, strategy=blue_green(pre_promotion_analysis=spec(url)))
    await first_deploy(scenario, providers)
    await green_healthy(scenario, providers)
    waiting = "query($d: ID!) { deployment(id: $d) { waitingFor { reason message } } }"
    promote = (
        "mutation($d: ID!, $s: Boolean) { promoteDeployment(input: {deploymentId: $d, skipAnalysis: $s}) { dryRun } }"
    )
    before = await snapshot(scenario.db)

    refused = await gql(client, promote, {"d": scenario.id})
    reason = (await gql(client, waiting, {"d": scenario.id}))["data"]["deployment"]["waitingFor"]

    assert error_code(refused) == "INVALID_STATE" and "skipAnalysis" in refused["errors"][0]["message"]
    assert await snapshot(scenario.db) == before
    assert reason["reason"] == "ANALYSIS" and "1 of 3 checks" in reason["message"]

    skipped = await gql(client, promote, {"d": scenario.id, "s": True})

    assert skipped["data"]["promoteDeployment"] == {"dryRun": False}
    assert await scenario.active_revisions() == [2]
    [run, _] = await runs(scenario)
    assert run.phase is AnalysisPhase.ERROR  # it never ended: stopped by the promotion
    assert (await scenario.history())[-2:] == ["analysis SKIPPED", "promote SUCCESS AWAITING_PROMOTION -> READY"]


async def test_a_scheduler_killed_while_measuring_leaves_the_check_to_the_next_one(
    scenario: Scenario, stub: tuple[Stub, str], providers: Providers
) -> None:
    metrics, url = stub
    delayed = AnalysisSpec(spec(url).metrics, count=1, initial_delay_seconds=10)
    await scenario.given_deployment(replicas=1, strategy=blue_green(pre_promotion_analysis=delayed))
    await scenario.deploy()
    await scenario.tick(providers)
    await scenario.healthy(revision=1)
    await scenario.tick(providers)  # the run starts; its first check is due in 10 s
    await scenario.shift_time(10)
    leased = await analysis.claim_due(scenario.db)  # a scheduler claims the check ... and dies measuring
    assert leased is not None
    await scenario.tick(providers)
    assert metrics.asked == 0  # the lease keeps the others off it

    await scenario.shift_time(analysis.LEASE_SECONDS)
    await scenario.tick(providers)

    [run] = await runs(scenario)
    assert (run.phase, run.passed) == (AnalysisPhase.SUCCESSFUL, 1)
    assert await scenario.state() == "READY"
    # The dead scheduler's late record is refused: its lease is gone.
    taken = await scheduler_analysis.measure_all(scenario.db, providers, leased)
    assert await analysis.record(scenario.db, leased, taken, scheduler_analysis.decide, actor="late") is None
    assert metrics.asked == 2


# --- post-promotion --------------------------------------------------------------------------------------------


async def test_a_failing_post_promotion_analysis_reverts_the_promotion_by_itself(
    scenario: Scenario, stub: tuple[Stub, str], providers: Providers
) -> None:
    metrics, url = stub
    strategy = blue_green(scale_down_delay_seconds=5, post_promotion_analysis=spec(url, count=3))
    await scenario.given_deployment(replicas=2, strategy=strategy)
    await first_deploy(scenario, providers)  # a first deploy has nothing to revert to: no post-promotion run
    assert await runs(scenario) == []
    await green_healthy(scenario, providers)
    await rollouts.promote(scenario.db, scenario.id, actor="alice")

    await checks_taken(scenario, providers, 1)  # 10 s: past the 5 s scale-down delay, yet blue stays warm
    assert [r.status for r in await scenario.live_routes(revision=1)] == [RouteStatus.HEALTHY] * 2
    metrics.value = 9.0
    await checks_taken(scenario, providers, 1)
    await scenario.tick(providers)

    assert await scenario.active_revisions() == [1, 1]
    [run] = await runs(scenario)
    assert run.phase is AnalysisPhase.FAILED
    assert (await scenario.history())[-1] == "revert SUCCESS"
    deployment = await scenario.deployment()
    assert deployment.current_revision_id == scenario.revisions[0]


async def test_a_passing_post_promotion_analysis_lets_the_old_routes_drain(
    scenario: Scenario, stub: tuple[Stub, str], providers: Providers
) -> None:
    _, url = stub
    await scenario.given_deployment(replicas=1, strategy=blue_green(post_promotion_analysis=spec(url, count=2)))
    await scenario.awaiting_promotion_of_revision_2()
    await rollouts.promote(scenario.db, scenario.id, actor="alice")

    await checks_taken(scenario, providers, 2)
    await scenario.shift_time(30)
    await scenario.tick(providers)

    assert await scenario.active_revisions() == [2]
    assert all(r.status is RouteStatus.TERMINATING for r in await scenario.routes(revision=1))
    [run] = await runs(scenario)
    assert run.phase is AnalysisPhase.SUCCESSFUL


async def test_a_person_reverting_stops_the_post_promotion_analysis(
    scenario: Scenario, stub: tuple[Stub, str], providers: Providers
) -> None:
    _, url = stub
    await scenario.given_deployment(replicas=1, strategy=blue_green(post_promotion_analysis=spec(url)))
    await scenario.awaiting_promotion_of_revision_2()
    await rollouts.promote(scenario.db, scenario.id, actor="alice")

    await rollouts.revert_promotion(scenario.db, scenario.id, actor="alice", reason="looks off")

    [run] = await runs(scenario)
    assert run.phase is AnalysisPhase.ERROR and run.next_check_at is None
    assert (await scenario.history())[-2:] == ["analysis SKIPPED", "revert SUCCESS"]
    await checks_taken(scenario, providers, 1)
    assert [r.phase for r in await runs(scenario)] == [AnalysisPhase.ERROR]
    assert await scenario.active_revisions() == [1]


# --- the API -----------------------------------------------------------------------------------------------------

CREATE = """mutation($i: CreateDeploymentInput!) { createDeployment(input: $i) { deployment { id
  strategy { blueGreen { prePromotionAnalysis { count intervalSeconds failureLimit metrics { name provider url jsonPath
  max } } } } } } }"""


def create_input(analysis_input: dict[str, Any]) -> dict[str, Any]:
    strategy = {"type": "BLUE_GREEN", "blueGreen": {"prePromotionAnalysis": analysis_input}}
    name = f"m-{time.monotonic_ns() % 10**9}"
    return {"projectId": "6f1c2a7e-0d4b-4f7e-9a51-3c0e8d2b9a10", "name": name, "replicas": 1, "strategy": strategy}


WEB = {"name": "errors", "provider": "WEB", "url": "http://metrics.internal/q", "jsonPath": "$.v", "max": 1.0}


async def test_an_analysis_spec_is_stored_and_read_back(client: httpx.AsyncClient) -> None:
    body = await gql(client, CREATE, {"i": create_input({"metrics": [WEB], "count": 5})})
    assert body["data"]["createDeployment"]["deployment"]["strategy"]["blueGreen"]["prePromotionAnalysis"] == {
        "count": 5, "intervalSeconds": 10, "failureLimit": 0,
        "metrics": [{"name": "errors", "provider": "WEB", "url": "http://metrics.internal/q", "jsonPath": "$.v",
                     "max": 1.0}],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("analysis_input", "field"),
    [
        ({"metrics": [{**WEB, "min": 2.0}]}, "min"),
        ({"metrics": [WEB], "count": 0}, "count"),
        ({"metrics": [WEB], "intervalSeconds": 0}, "intervalSeconds"),
        ({"metrics": [WEB], "count": 2, "failureLimit": 2}, "failureLimit"),
        ({"metrics": []}, "metrics"),
        ({"metrics": [WEB, WEB]}, "metrics"),
        ({"metrics": [{**WEB, "url": None}]}, "url"),
        ({"metrics": [{**WEB, "url": "ftp://metrics.internal/q"}]}, "url"),
        ({"metrics": [{**WEB, "url": "http://169.254.169.254/latest"}]}, "url"),
        ({"metrics": [{**WEB, "jsonPath": "$[?"}]}, "jsonPath"),
        ({"metrics": [{**WEB, "max": None}]}, "min, max"),
        ({"metrics": [{"name": "p", "provider": "PROMETHEUS", "query": "up", "max": 1.0}]},
         "SWITCHOVER_PROMETHEUS_URL"),
        ({"metrics": [{"name": "b", "provider": "BUILTIN", "query": "cpu", "max": 1.0}]}, "query"),
        ({"metrics": [{"name": "b", "provider": "BUILTIN", "query": "shadow-agreement-rate", "min": 99.0}]}, "query"),
        ({"metrics": [{**WEB, "url": "http://[::ffff:169.254.169.254]/latest"}]}, "url"),
        ({"metrics": [{**WEB, "url": "http://0.0.0.0:9000/"}]}, "url"),
        ({"metrics": [{"name": "b", "provider": "BUILTIN", "query": "request-success-rate", "url": "http://x/",
                       "min": 99.0}]}, "url"),
    ],
)  # fmt: skip
async def test_a_bad_analysis_spec_is_refused_naming_its_field_and_creates_nothing(
    client: httpx.AsyncClient, db: Any, analysis_input: dict[str, Any], field: str
) -> None:
    before = await snapshot(db)

    body = await gql(client, CREATE, {"i": create_input(analysis_input)})

    assert error_code(body) == "BAD_USER_INPUT", body
    assert "prePromotionAnalysis" in body["errors"][0]["message"] and field in body["errors"][0]["message"]
    assert await snapshot(db) == before


async def test_runs_and_measurements_are_read_through_the_api(
    scenario: Scenario, stub: tuple[Stub, str], providers: Providers, client: httpx.AsyncClient
) -> None:
    _, url = stub
    await scenario.given_deployment(replicas=1, strategy=blue_green(pre_promotion_analysis=spec(url, count=2)))
    await first_deploy(scenario, providers)
    query = """query($d: ID!) { deployment(id: $d) { lifecycle analysisRuns { edges { node {
      kind phase passedChecks failedChecks nextCheckAt finishedAt revision { number }
      measurements { metric value passed message } } } } } }"""

    body = await gql(client, query, {"d": scenario.id})

    deployment = body["data"]["deployment"]
    assert deployment["lifecycle"] == "READY"
    [edge] = deployment["analysisRuns"]["edges"]
    run = edge["node"]
    assert (run["kind"], run["phase"], run["passedChecks"], run["failedChecks"]) == ("PRE_PROMOTION", "SUCCESSFUL",
                                                                                   2, 0)  # fmt: skip
    assert run["revision"] == {"number": 1} and run["nextCheckAt"] is None and run["finishedAt"]
    assert [(m["metric"], m["value"], m["passed"]) for m in run["measurements"]] == [("error-rate", 1.0, True)] * 2


async def test_a_prometheus_check_needs_its_query(db: Any, database_url: str) -> None:
    from switchover.app import create_app
    from switchover.settings import Settings

    settings = Settings(database_url=database_url, insecure=True, prometheus_url="http://prometheus.internal:9090")
    transport = httpx.ASGITransport(app=create_app(settings, db))
    async with httpx.AsyncClient(transport=transport, base_url="http://switchover") as client:
        missing = {"metrics": [{"name": "p", "provider": "PROMETHEUS", "max": 1.0}]}
        given = {"metrics": [{"name": "p", "provider": "PROMETHEUS", "query": "sum(up)", "min": 1.0}]}
        refused = await gql(client, CREATE, {"i": create_input(missing)})
        created = await gql(client, CREATE, {"i": create_input(given)})

    assert error_code(refused) == "BAD_USER_INPUT" and "metrics[0].query" in refused["errors"][0]["message"]
    assert "errors" not in created, created



async def test_a_run_says_what_it_measures(
    scenario: Scenario, stub: tuple[Stub, str], providers: Providers, client: httpx.AsyncClient
) -> None:
    _, url = stub
    await scenario.given_deployment(replicas=1, strategy=blue_green(pre_promotion_analysis=spec(url, count=2)))
    await first_deploy(scenario, providers)
    query = "query($d: ID!) { deployment(id: $d) { analysisRuns { edges { node { spec { count intervalSeconds metrics { name max } } } } } } }"  # noqa: E501

    body = await gql(client, query, {"d": scenario.id})

    [edge] = body["data"]["deployment"]["analysisRuns"]["edges"]
    assert edge["node"]["spec"] == {"count": 2, "intervalSeconds": 10, "metrics": [{"name": "error-rate", "max": 2.0}]}


# --- an analysis judges its own rollout ---------------------------------------------------------------------------


async def test_nothing_but_a_revert_may_change_a_deployment_while_its_promotion_is_judged(
    scenario: Scenario, stub: tuple[Stub, str], providers: Providers
) -> None:
    _, url = stub
    await scenario.given_deployment(replicas=1, strategy=blue_green(post_promotion_analysis=spec(url)))
    await scenario.awaiting_promotion_of_revision_2()
    await rollouts.promote(scenario.db, scenario.id, actor="alice")
    third = await scenario.add_revision()
    before = await snapshot(scenario.db)

    for change in (
        rollouts.deploy_revision(scenario.db, scenario.id, third, actor="alice"),
        deployments.scale(scenario.db, scenario.id, 2, actor="alice"),
        deployments.change_strategy(scenario.db, scenario.id, blue_green(), actor="alice"),
    ):
        with pytest.raises(Conflict, match="post-promotion analysis"):
            await change

    assert await snapshot(scenario.db) == before


async def test_a_revision_deployed_again_is_analysed_again(
    scenario: Scenario, stub: tuple[Stub, str], providers: Providers
) -> None:
    metrics, url = stub
    await scenario.given_deployment(replicas=1, strategy=blue_green(pre_promotion_analysis=spec(url, count=1)))
    await first_deploy(scenario, providers)
    metrics.value = 9.0
    await green_healthy(scenario, providers)  # its only check fails: rolled back
    await scenario.tick(providers)
    await scenario.finish_stopping()
    await scenario.tick(providers)
    assert await scenario.state() == "READY" and await scenario.active_revisions() == [1]

    metrics.value = 1.0  # fixed; the same revision again
    await scenario.deploy(scenario.revisions[1])
    await scenario.tick(providers)
    await scenario.healthy(revision=2)
    await scenario.tick(providers)

    assert [r.phase for r in await runs(scenario)][:2] == [AnalysisPhase.SUCCESSFUL, AnalysisPhase.FAILED]
    assert await scenario.state() == "DEPLOYING/DEPLOYING_AWAITING_PROMOTION"  # not rolled back by the old run
    await rollouts.promote(scenario.db, scenario.id, actor="alice")  # its own new analysis passed
    assert await scenario.active_revisions() == [2]


async def test_a_person_restoring_a_reverted_promotion_is_not_reverted_again(
    scenario: Scenario, stub: tuple[Stub, str], providers: Providers
) -> None:
    metrics, url = stub
    strategy = blue_green(scale_down_delay_seconds=600, post_promotion_analysis=spec(url))
    await scenario.given_deployment(replicas=1, strategy=strategy)
    await scenario.awaiting_promotion_of_revision_2()
    await rollouts.promote(scenario.db, scenario.id, actor="alice")
    metrics.value = 9.0
    await checks_taken(scenario, providers, 1)
    await scenario.tick(providers)
    assert await scenario.active_revisions() == [1]  # the analysis reverted it

    await rollouts.revert_promotion(scenario.db, scenario.id, actor="alice", reason="the metric was wrong")
    await scenario.tick(providers)
    await scenario.shift_time(600)
    await scenario.tick(providers)

    assert await scenario.active_revisions() == [2]


async def test_a_failed_post_promotion_analysis_with_nothing_to_revert_to_says_so_once(
    scenario: Scenario, stub: tuple[Stub, str], providers: Providers
) -> None:
    metrics, url = stub
    await scenario.given_deployment(replicas=1, strategy=blue_green(post_promotion_analysis=spec(url)))
    await scenario.awaiting_promotion_of_revision_2()
    await rollouts.promote(scenario.db, scenario.id, actor="alice")
    await scenario.report(RouteStatus.UNHEALTHY, revision=1)  # the routes a revert needs are gone
    metrics.value = 9.0

    await checks_taken(scenario, providers, 1)
    await scenario.tick(providers)
    await checks_taken(scenario, providers, 1)

    history = await scenario.history()
    assert history.count("analysis GIVE_UP") == 2  # the run's end, and "nothing to revert to": once
    assert await scenario.active_revisions() == [2]


@pytest.mark.parametrize(
    "url",
    ["http://[::ffff:127.0.0.1]:{port}/metrics", "http://0.0.0.0:{port}/metrics", "http://127.0.0.1:{port}/metrics",
     "http://[::ffff:169.254.169.254]/latest", "http://[::ffff:a9fe:a9fe]/latest"],
)  # fmt: skip
async def test_a_web_check_reaches_no_address_it_may_not_whatever_its_spelling(
    stub: tuple[Stub, str], url: str
) -> None:
    from scheduler.providers import Target, web

    metrics, base = stub
    target = Target("d", "model", "p", "r", 1, 10)
    async with httpx.AsyncClient() as http:
        reading = await web.measure(http, url.format(port=base.rsplit(":", 1)[1]), "$.data.errorRate", target,
                                    allow_loopback=False)  # fmt: skip

    assert reading.value is None and "address" in reading.message, reading
    assert metrics.asked == 0
