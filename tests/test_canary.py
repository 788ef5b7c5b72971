"""Canary rollouts (SPEC §6): weights step by step on exact route counts, pauses (timed, or until a person promotes),
`full: true`, analysis steps and background analysis that roll back, a person's rollback, a first deploy, and the
inputs refused. After every scheduler pass the current revision keeps its capacity and the shares add up to 1."""

import math
import time
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from scheduler import analysis as scheduler_analysis
from scheduler import runner
from scheduler.providers import Providers
from store import reads, rollouts, route_health
from store.models import (
    AnalysisPhase,
    AnalysisRunKind,
    CanaryStep,
    DeploymentLifecycle,
    Pause,
    RouteStatus,
    RouteTrafficStatus,
)
from tests.analysis_helpers import Stub, spec
from tests.graphql import data, error_code, gql
from tests.scenario import Scenario, canary
from tests.state import snapshot


def weight(w: int) -> CanaryStep:
    return CanaryStep(set_weight=w)


def pause(seconds: int | None = None) -> CanaryStep:
    return CanaryStep(pause=Pause(seconds))


async def held(s: Scenario) -> None:
    """What must hold after every pass: ACTIVE shares add up to 1, and before 100 % the current revision still has
    `replicas` HEALTHY routes taking traffic (its capacity never drops)."""
    d = await s.deployment()
    active = await s.routes(traffic=RouteTrafficStatus.ACTIVE)
    if active:
        assert math.isclose(sum(r.traffic_ratio for r in active), 1.0, abs_tol=1e-9), active
    if d.lifecycle is DeploymentLifecycle.DEPLOYING and d.current_revision_id and (d.canary_weight or 0) < 100:
        serving_current = [
            r for r in active if r.revision_id == d.current_revision_id and r.status is RouteStatus.HEALTHY
        ]
        assert len(serving_current) >= d.replicas, (await s.history(), active)


async def tick(s: Scenario, providers: Providers | None = None) -> None:
    await s.tick(providers)
    await held(s)


async def shares(s: Scenario) -> list[tuple[int, float]]:
    """(revision number, share) of each ACTIVE route, oldest route first."""
    active = await s.routes(traffic=RouteTrafficStatus.ACTIVE)
    return [(s.revisions.index(r.revision_id) + 1, round(r.traffic_ratio, 6)) for r in active]


async def canary_on_revision_2(s: Scenario, replicas: int, *steps: CanaryStep, **options: Any) -> None:
    """Given revision 1 serving `replicas` routes with a canary strategy, when revision 2 is deployed."""
    await s.given_deployment(replicas=replicas, strategy=canary(*steps, **options))
    await s.ready_on_first_revision()
    await s.deploy()
    await tick(s)


async def step_healthy(s: Scenario, providers: Providers | None = None) -> None:
    """The orchestrator reports every new route healthy; the scheduler passes."""
    await s.healthy(revision=2)
    await tick(s, providers)


async def test_weights_step_by_step_on_exact_route_counts(scenario: Scenario) -> None:
    await canary_on_revision_2(scenario, 4, weight(25), weight(50), weight(100))

    assert await scenario.state() == "DEPLOYING/DEPLOYING_PROGRESSING"
    assert len(await scenario.live_routes(revision=2)) == 1  # max(1, ceil(4 · 25 / 100))
    assert await shares(scenario) == [(1, 0.25)] * 4  # not healthy yet: no traffic

    await step_healthy(scenario)
    assert await shares(scenario) == [(1, 0.1875)] * 4 + [(2, 0.25)]
    assert len(await scenario.live_routes(revision=2)) == 2  # the next step's route is starting
    assert ((await scenario.deployment()).canary_step_index, (await scenario.deployment()).canary_weight) == (1, 25)

    await step_healthy(scenario)
    assert await shares(scenario) == [(1, 0.125)] * 4 + [(2, 0.25)] * 2
    assert len(await scenario.live_routes(revision=2)) == 4

    await step_healthy(scenario)
    assert await scenario.state() == "READY"
    assert await shares(scenario) == [(2, 0.25)] * 4
    deployment = await scenario.deployment()
    assert deployment.current_revision_id == scenario.revisions[1] and deployment.canary_step_index is None
    assert [r.status for r in await scenario.live_routes(revision=1)] == [RouteStatus.HEALTHY] * 4  # kept warm
    assert (await scenario.history())[-1] == "canary SUCCESS PROGRESSING -> READY"

    await scenario.shift_time(30)  # the canary's scaleDownDelaySeconds
    await tick(scenario)
    assert all(r.status is RouteStatus.TERMINATING for r in await scenario.routes(revision=1))


async def test_each_weight_change_is_one_history_row_that_says_from_what_to_what(scenario: Scenario) -> None:
    await canary_on_revision_2(scenario, 2, weight(50), weight(100))
    await step_healthy(scenario)
    await step_healthy(scenario)

    page = (await reads.history_pages(scenario.db, [scenario.id], first=100))[scenario.id]
    weights = [h.message for _, h in reversed(page.items) if h.phase == "canary" and "weight" in h.message]
    assert weights == [
        "weight 0 % -> 50 % (step 1 of 2): 1 new route(s) share 50 %, 2 current route(s) share 50 %",
        "weight 50 % -> 100 % (step 2 of 2): 2 new route(s) share 100 %, 0 current route(s) share 0 %; "
        "2 old route(s) drain after 30 s",
    ]
    assert (await scenario.history())[-1] == "canary SUCCESS PROGRESSING -> READY"


async def test_a_timed_pause_holds_the_weight_until_its_seconds_passed(
    scenario: Scenario, client: httpx.AsyncClient
) -> None:
    await canary_on_revision_2(scenario, 2, weight(50), pause(60), weight(100))
    await step_healthy(scenario)
    query = """query($d: ID!) { deployment(id: $d) { subStep nextActionAt phaseStartedAt
      canaryStatus { stepIndex weight } waitingFor { reason message } } }"""

    paused = (await data(client, query, {"d": scenario.id}))["deployment"]
    await scenario.shift_time(59)
    await tick(scenario)

    assert paused["canaryStatus"] == {"stepIndex": 1, "weight": 50}
    assert paused["waitingFor"]["reason"] == "CANARY_PAUSE" and "step 2 of 3" in paused["waitingFor"]["message"]
    started = paused["phaseStartedAt"].replace("Z", "+00:00")
    assert datetime.fromisoformat(paused["nextActionAt"]) == datetime.fromisoformat(started) + timedelta(seconds=60)
    assert await scenario.state() == "DEPLOYING/DEPLOYING_PROGRESSING"
    assert len(await scenario.live_routes(revision=2)) == 1

    await scenario.shift_time(1)
    await tick(scenario)
    assert len(await scenario.live_routes(revision=2)) == 2  # the last step starts its routes
    await step_healthy(scenario)
    assert await scenario.state() == "READY"
    assert await shares(scenario) == [(2, 0.5)] * 2


async def test_a_pause_without_seconds_waits_for_promote_deployment(
    scenario: Scenario, client: httpx.AsyncClient
) -> None:
    await canary_on_revision_2(scenario, 2, weight(50), pause(), weight(100))
    await step_healthy(scenario)
    promote = "mutation($d: ID!) { promoteDeployment(input: {deploymentId: $d}) { deployment { subStep canaryStatus { stepIndex weight } } } }"  # noqa: E501
    status = "query($d: ID!) { deployment(id: $d) { nextActionAt waitingFor { reason } canaryStatus { weight } } }"

    await scenario.shift_time(3600)
    await tick(scenario)
    waiting = (await data(client, status, {"d": scenario.id}))["deployment"]
    assert waiting == {"nextActionAt": None, "waitingFor": {"reason": "CANARY_PAUSE"}, "canaryStatus": {"weight": 50}}
    assert await scenario.state() == "DEPLOYING/DEPLOYING_AWAITING_PROMOTION"

    resumed = (await data(client, promote, {"d": scenario.id}))["promoteDeployment"]["deployment"]
    assert resumed == {"subStep": "DEPLOYING_PROGRESSING", "canaryStatus": {"stepIndex": 2, "weight": 50}}
    refused = await gql(client, promote, {"d": scenario.id})  # stepping, not paused: only `full` skips ahead
    assert error_code(refused) == "INVALID_STATE" and "full: true" in refused["errors"][0]["message"]

    await tick(scenario)
    await step_healthy(scenario)
    assert await scenario.state() == "READY"
    assert (await scenario.history())[-1] == "canary SUCCESS PROGRESSING -> READY"


async def test_full_promotion_skips_the_remaining_steps_to_100_percent(
    scenario: Scenario, client: httpx.AsyncClient
) -> None:
    await canary_on_revision_2(scenario, 4, weight(25), pause(), weight(50), pause(), weight(100))
    await step_healthy(scenario)
    assert await scenario.state() == "DEPLOYING/DEPLOYING_AWAITING_PROMOTION"
    promote = "mutation($d: ID!) { promoteDeployment(input: {deploymentId: $d, full: true}) { deployment { canaryStatus { stepIndex weight } } } }"  # noqa: E501

    body = await data(client, promote, {"d": scenario.id})
    await tick(scenario)

    assert body["promoteDeployment"]["deployment"]["canaryStatus"] == {"stepIndex": 5, "weight": 25}
    assert len(await scenario.live_routes(revision=2)) == 4  # the final 100 %: replicas routes
    assert await shares(scenario) == [(1, 0.1875)] * 4 + [(2, 0.25)]
    await step_healthy(scenario)
    assert await scenario.state() == "READY"
    assert await shares(scenario) == [(2, 0.25)] * 4
    history = await scenario.history()
    assert "canary SUCCESS AWAITING_PROMOTION -> PROGRESSING" in history
    assert history[-1] == "canary SUCCESS PROGRESSING -> READY"


# --- analysis ------------------------------------------------------------------------------------------------------


async def test_a_failing_analysis_step_puts_100_percent_back_on_current_in_one_transaction(
    scenario: Scenario, stub: tuple[Stub, str], providers: Providers
) -> None:
    metrics, url = stub
    await canary_on_revision_2(scenario, 2, weight(50), CanaryStep(analysis=spec(url, count=3)), weight(100))
    await step_healthy(scenario, providers)  # 50 %; the step's run starts and takes its first check (it passes)
    [run] = [r for _, r in (await reads.analysis_run_pages(scenario.db, [scenario.id]))[scenario.id].items]
    assert (run.kind, run.phase, run.passed) == (AnalysisRunKind.CANARY_STEP, AnalysisPhase.RUNNING, 1)
    assert await shares(scenario) == [(1, 0.25)] * 2 + [(2, 0.5)]

    metrics.value = 9.0  # outside max 2.0
    await scenario.shift_time(10)
    assert await scheduler_analysis.step(scenario.db, providers)  # the check fails the run
    assert await runner.step(scenario.db)  # the deployment acts on it: one transaction

    assert await scenario.state() == "DEPLOYING/DEPLOYING_ROLLING_BACK"
    assert await shares(scenario) == [(1, 0.5)] * 2
    assert [r.status for r in await scenario.live_routes(revision=2)] == [RouteStatus.HEALTHY]  # stops next
    assert (await scenario.history())[-1] == "canary GIVE_UP PROGRESSING -> ROLLING_BACK"
    await held(scenario)

    await tick(scenario, providers)
    assert await scenario.state() == "READY"
    assert (await scenario.deployment()).current_revision_id == scenario.revisions[0]
    assert await scenario.live_routes(revision=2) == []
    assert (await scenario.history())[-1] == "rollback SUCCESS ROLLING_BACK -> READY"


async def test_a_passing_analysis_step_lets_the_canary_go_on(
    scenario: Scenario, stub: tuple[Stub, str], providers: Providers
) -> None:
    _, url = stub
    await canary_on_revision_2(scenario, 2, weight(50), CanaryStep(analysis=spec(url, count=2)), weight(100))
    await step_healthy(scenario, providers)
    await scenario.shift_time(10)
    await tick(scenario, providers)  # the second check: SUCCESSFUL; the last step starts its route

    assert len(await scenario.live_routes(revision=2)) == 2
    await step_healthy(scenario, providers)
    assert await scenario.state() == "READY"


async def test_a_background_analysis_that_never_failed_ends_successful_with_the_rollout(
    scenario: Scenario, stub: tuple[Stub, str], providers: Providers
) -> None:
    _, url = stub
    await scenario.given_deployment(replicas=2, strategy=canary(weight(50), weight(100), analysis=spec(url, count=20)))
    await scenario.ready_on_first_revision()
    await scenario.deploy()
    await tick(scenario, providers)  # the background run starts with the first step, and takes its first check
    await step_healthy(scenario, providers)
    await step_healthy(scenario, providers)

    assert await scenario.state() == "READY"
    [run] = [r for _, r in (await reads.analysis_run_pages(scenario.db, [scenario.id]))[scenario.id].items]
    assert (run.kind, run.phase, run.failed) == (AnalysisRunKind.BACKGROUND, AnalysisPhase.SUCCESSFUL, 0)
    assert run.next_check_at is None


async def test_a_failing_background_analysis_rolls_back_from_a_pause(
    scenario: Scenario, stub: tuple[Stub, str], providers: Providers
) -> None:
    metrics, url = stub
    await scenario.given_deployment(
        replicas=2, strategy=canary(weight(50), pause(), weight(100), analysis=spec(url, count=5))
    )
    await scenario.ready_on_first_revision()
    await scenario.deploy()
    await tick(scenario, providers)  # the background run starts with the first step
    await step_healthy(scenario, providers)
    assert await scenario.state() == "DEPLOYING/DEPLOYING_AWAITING_PROMOTION"

    metrics.value = 9.0
    await scenario.shift_time(10)
    await tick(scenario, providers)

    assert await scenario.state() == "READY"
    assert await shares(scenario) == [(1, 0.5)] * 2
    [run] = [r for _, r in (await reads.analysis_run_pages(scenario.db, [scenario.id]))[scenario.id].items]
    assert (run.kind, run.phase) == (AnalysisRunKind.BACKGROUND, AnalysisPhase.FAILED)
    history = await scenario.history()
    assert history[-2:] == [
        "canary GIVE_UP AWAITING_PROMOTION -> ROLLING_BACK",
        "rollback SUCCESS ROLLING_BACK -> READY",
    ]


async def test_rollback_deployment_mid_way_puts_100_percent_back_at_once(scenario: Scenario) -> None:
    await canary_on_revision_2(scenario, 3, weight(34), weight(67), weight(100))
    await step_healthy(scenario)
    assert len(await scenario.live_routes(revision=2)) == 3  # 2 for 34 % (ceil(3 · 0.34)) and 1 starting for 67 %
    assert await shares(scenario) == [(1, 0.22)] * 3 + [(2, 0.17)] * 2

    await rollouts.begin_rollback(scenario.db, scenario.id, actor="alice", reason="latency")

    assert await scenario.state() == "DEPLOYING/DEPLOYING_ROLLING_BACK"
    assert await shares(scenario) == [(1, round(1 / 3, 6))] * 3
    assert (await scenario.deployment()).canary_step_index is None
    await tick(scenario)
    assert await scenario.state() == "READY"
    assert await scenario.live_routes(revision=2) == []
    assert (await scenario.history())[-2:] == ["rollback SUCCESS PROGRESSING -> ROLLING_BACK",
                                               "rollback SUCCESS ROLLING_BACK -> READY"]  # fmt: skip


async def test_a_first_deploy_goes_straight_to_100_percent(scenario: Scenario) -> None:
    await scenario.given_deployment(replicas=3, strategy=canary(weight(10), pause(), weight(100)))
    await scenario.deploy()
    await tick(scenario)
    assert len(await scenario.live_routes(revision=1)) == 3
    assert await shares(scenario) == []

    await scenario.healthy(revision=1)
    await tick(scenario)

    assert await scenario.state() == "READY"
    assert await shares(scenario) == [(1, round(1 / 3, 6))] * 3
    assert (await scenario.history())[-1] == "canary SUCCESS PROVISIONING -> READY"


async def test_a_step_whose_routes_never_become_healthy_expires_and_rolls_back(scenario: Scenario) -> None:
    await canary_on_revision_2(scenario, 2, weight(50), weight(100), provisioning_timeout_seconds=60)
    await scenario.shift_time(60)
    await tick(scenario)

    assert await scenario.state() == "READY"
    assert await shares(scenario) == [(1, 0.5)] * 2
    assert (await scenario.history())[-2:] == ["canary EXPIRED PROGRESSING -> ROLLING_BACK",
                                               "rollback SUCCESS ROLLING_BACK -> READY"]  # fmt: skip


# --- the API -----------------------------------------------------------------------------------------------------

CREATE = """mutation($i: CreateDeploymentInput!) { createDeployment(input: $i) { deployment { id strategy { type
  canary { scaleDownDelaySeconds steps { setWeight pause { seconds } analysis { count } } analysis { count } } } } }
  }"""
CHECK = {"metrics": [{"name": "errors", "provider": "WEB", "url": "http://metrics.internal/q", "max": 1.0}]}


def create_input(strategy: dict[str, Any]) -> dict[str, Any]:
    name = f"c-{time.monotonic_ns() % 10**9}"
    return {"projectId": "6f1c2a7e-0d4b-4f7e-9a51-3c0e8d2b9a10", "name": name, "replicas": 2, "strategy": strategy}


async def test_a_canary_strategy_is_stored_and_read_back(client: httpx.AsyncClient) -> None:
    steps = [{"setWeight": 20}, {"pause": {}}, {"analysis": CHECK}, {"pause": {"seconds": 30}}, {"setWeight": 100}]
    strategy = {"type": "CANARY", "canary": {"steps": steps, "analysis": {**CHECK, "count": 5}}}

    body = await data(client, CREATE, {"i": create_input(strategy)})

    assert body["createDeployment"]["deployment"]["strategy"] == {"type": "CANARY", "canary": {
        "scaleDownDelaySeconds": 30, "analysis": {"count": 5}, "steps": [
            {"setWeight": 20, "pause": None, "analysis": None}, {"setWeight": None, "pause": {"seconds": None},
             "analysis": None}, {"setWeight": None, "pause": None, "analysis": {"count": 3}},
            {"setWeight": None, "pause": {"seconds": 30}, "analysis": None},
            {"setWeight": 100, "pause": None, "analysis": None}]}}  # fmt: skip


W100 = {"setWeight": 100}


@pytest.mark.parametrize(
    ("strategy", "field"),
    [
        ({"type": "CANARY", "canary": {"steps": []}}, "strategy.canary.steps must hold"),
        ({"type": "CANARY"}, "strategy.canary.steps must hold"),
        ({"type": "CANARY", "canary": {"steps": [{}, W100]}}, "strategy.canary.steps[0] sets none"),
        ({"type": "CANARY", "canary": {"steps": [{"setWeight": 10, "pause": {"seconds": 5}}, W100]}},
         "strategy.canary.steps[0] sets setWeight and pause"),
        ({"type": "CANARY", "canary": {"steps": [{"setWeight": 101}]}}, "strategy.canary.steps[0].setWeight"),
        ({"type": "CANARY", "canary": {"steps": [{"setWeight": -1}, W100]}}, "strategy.canary.steps[0].setWeight"),
        ({"type": "CANARY", "canary": {"steps": [{"setWeight": 50}, {"setWeight": 20}, W100]}},
         "strategy.canary.steps[1].setWeight (20) is below an earlier weight (50)"),
        ({"type": "CANARY", "canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}, "setWeight: 100"),
        ({"type": "CANARY", "canary": {"steps": [{"pause": {"seconds": 5}}]}}, "setWeight: 100"),
        ({"type": "CANARY", "canary": {"steps": [{"pause": {"seconds": 0}}, W100]}},
         "strategy.canary.steps[0].pause.seconds"),
        ({"type": "CANARY", "canary": {"steps": [{"pause": {"seconds": 86401}}, W100]}},
         "strategy.canary.steps[0].pause.seconds"),
        ({"type": "CANARY", "canary": {"steps": [{"analysis": {**CHECK, "count": 0}}, W100]}},
         "strategy.canary.steps[0].analysis.count"),
        ({"type": "CANARY", "canary": {"steps": [W100], "analysis": {**CHECK, "intervalSeconds": 0}}},
         "strategy.canary.analysis.intervalSeconds"),
        ({"type": "CANARY", "canary": {"steps": [W100], "scaleDownDelaySeconds": -1}},
         "strategy.canary.scaleDownDelaySeconds"),
        ({"type": "BLUE_GREEN", "canary": {"steps": [W100]}}, "strategy.canary is only for type CANARY"),
        ({"type": "CANARY", "canary": {"steps": [W100]}, "blueGreen": {}}, "strategy.blueGreen"),
        ({"type": "CANARY", "canary": {"steps": [W100]}, "rollingUpdate": {}}, "strategy.rollingUpdate"),
    ],
)  # fmt: skip
async def test_a_bad_canary_is_refused_naming_its_field_and_creates_nothing(
    client: httpx.AsyncClient, db: Any, strategy: dict[str, Any], field: str
) -> None:
    before = await snapshot(db)

    body = await gql(client, CREATE, {"i": create_input(strategy)})

    assert error_code(body) == "BAD_USER_INPUT", body
    assert field in body["errors"][0]["message"], body["errors"][0]["message"]
    assert await snapshot(db) == before


async def test_a_route_that_stops_mid_canary_leaves_the_weight_as_it_was(scenario: Scenario) -> None:
    await canary_on_revision_2(scenario, 4, weight(10), pause(), weight(100))
    await step_healthy(scenario)
    [stopped, *_] = await scenario.routes(revision=1)

    await route_health.report_route_health(scenario.db, stopped.id, RouteStatus.TERMINATED, actor="orchestrator")

    shares_now = await shares(scenario)
    assert math.isclose(sum(r for n, r in shares_now if n == 2), 0.10)  # the canary still has 10 %
    assert math.isclose(sum(r for _, r in shares_now), 1.0)
