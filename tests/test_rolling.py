"""Rolling updates: step sequences within maxSurge / maxUnavailable, failures, rollback and strategy switches."""

from typing import Any

import pytest

from scheduler.handlers import DRAIN_ORDER
from store import deployments, rollouts, route_health
from store.errors import BadUserInput, InvalidState
from store.models import IntOrPercent, RouteStatus, RouteTrafficStatus
from tests.scenario import Scenario, blue_green, rolling
from tests.state import snapshot


def count(n: int) -> IntOrPercent:
    return IntOrPercent(count=n)


def percent(p: float) -> IntOrPercent:
    return IntOrPercent(percent=p)


async def serving(s: Scenario) -> int:
    routes = await s.routes(traffic=RouteTrafficStatus.ACTIVE)
    return sum(r.status is RouteStatus.HEALTHY for r in routes)


async def roll_out(s: Scenario, *, revision: int, minimum: int, limit: int) -> list[tuple[int, int]]:
    """Pass after pass, with the orchestrator bringing every new route up in between; returns (new, old) live
    routes after each pass. Serving and the total are checked after every pass."""
    steps = []
    for _ in range(50):
        await s.tick()
        live = await s.live_routes()
        new = [r for r in live if r.revision_id == s.revisions[revision - 1]]
        steps.append((len(new), len(live) - len(new)))
        assert await serving(s) >= minimum, steps
        assert len(live) <= limit, steps
        if await s.state() == "READY":
            return steps
        await s.report(RouteStatus.HEALTHY, revision=revision)
        await s.finish_stopping()
    raise AssertionError(f"no convergence: {steps}")


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable", "expected"),
    [
        (4, count(1), count(0), [(1, 4), (2, 3), (3, 2), (4, 1), (4, 0)]),
        (4, percent(0.5), percent(0), [(2, 4), (4, 2), (4, 0)]),
        (2, count(0), percent(1.0), [(2, 0), (2, 0)]),
        (1, count(0), percent(1.0), [(1, 0), (1, 0)]),
        (1, percent(0.5), count(0), [(1, 1), (1, 0)]),
        (3, count(0), count(1), [(1, 2), (2, 1), (3, 0), (3, 0)]),
        (10, percent(0.25), percent(0.1), None),
        (5, count(5), count(0), [(5, 5), (5, 0)]),
    ],
)
async def test_a_rolling_update_stays_within_surge_and_unavailable(
    scenario: Scenario, replicas: int, surge: IntOrPercent, unavailable: IntOrPercent, expected: Any
) -> None:
    await scenario.given_deployment(replicas=replicas, strategy=rolling(surge, unavailable))
    await scenario.ready_on_first_revision()
    assert await scenario.active_revisions() == [1] * replicas
    resolved_surge = surge.resolve(replicas, round_up=True)
    minimum = replicas - unavailable.resolve(replicas, round_up=False)

    await scenario.deploy()
    steps = await roll_out(scenario, revision=2, minimum=minimum, limit=replicas + resolved_surge)

    if expected is not None:
        assert steps == expected
    assert await scenario.state() == "READY"
    assert (await scenario.deployment()).current_revision_id == scenario.revisions[1]
    assert await scenario.active_revisions() == [2] * replicas
    assert (await scenario.history())[-1] == "roll SUCCESS PROVISIONING -> READY"


async def test_a_first_rolling_deploy_starts_every_replica_at_once(scenario: Scenario) -> None:
    await scenario.given_deployment(replicas=5, strategy=rolling(count(1), count(0)))
    await scenario.deploy()
    await scenario.tick()
    assert len(await scenario.live_routes(revision=1)) == 5


async def test_new_routes_take_traffic_as_soon_as_they_are_healthy(scenario: Scenario) -> None:
    await scenario.given_deployment(replicas=2, strategy=rolling(count(2), count(0)))
    await scenario.ready_on_first_revision()
    await scenario.deploy()
    await scenario.tick()
    await scenario.healthy(revision=2, count=1)
    await scenario.tick()

    assert sorted(await scenario.active_revisions()) == [1, 2]  # one old stopped as the first new one served
    active = await scenario.routes(traffic=RouteTrafficStatus.ACTIVE)
    assert [r.traffic_ratio for r in active] == [0.5, 0.5]


async def test_old_routes_drain_least_healthy_first(scenario: Scenario) -> None:
    await scenario.given_deployment(replicas=3, strategy=rolling(count(1), count(1)))
    await scenario.ready_on_first_revision()
    old = await scenario.routes(revision=1)
    await route_health.report_route_health(scenario.db, old[2].id, RouteStatus.DEGRADED, actor="orchestrator")

    await scenario.deploy()
    await scenario.tick()

    stopped = [r.id for r in await scenario.routes(revision=1) if r.status is RouteStatus.TERMINATING]
    assert stopped == [old[2].id]  # the degraded one, though the newest; two healthy keep serving
    assert DRAIN_ORDER[RouteStatus.PROVISIONING] < DRAIN_ORDER[RouteStatus.UNHEALTHY] < DRAIN_ORDER[RouteStatus.HEALTHY]


async def test_among_equally_healthy_old_routes_the_oldest_drains_first(scenario: Scenario) -> None:
    await scenario.given_deployment(replicas=3, strategy=rolling(count(1), count(1)))
    await scenario.ready_on_first_revision()
    old = await scenario.routes(revision=1)

    await scenario.deploy()
    await scenario.tick()

    stopped = [r.id for r in await scenario.routes(revision=1) if r.status is RouteStatus.TERMINATING]
    assert stopped == [old[0].id]


async def test_old_routes_that_serve_nothing_stop_even_while_too_few_serve(scenario: Scenario) -> None:
    await scenario.given_deployment(replicas=3, strategy=rolling(count(1), count(1)))
    await scenario.ready_on_first_revision()
    old = await scenario.routes(revision=1)
    for route in old[1:]:
        await route_health.report_route_health(scenario.db, route.id, RouteStatus.UNHEALTHY, actor="orchestrator")

    await scenario.deploy()
    await scenario.tick()

    # Only one old route serves (fewer than replicas - unavailable = 2): it stays; the unhealthy ones make room.
    assert [r.status for r in await scenario.routes(revision=1)] == [RouteStatus.HEALTHY] + [
        RouteStatus.TERMINATING
    ] * 2
    assert len(await scenario.live_routes(revision=2)) == 3


async def test_a_rolling_rollback_that_cannot_restore_in_time_hands_over_to_ready(scenario: Scenario) -> None:
    await scenario.given_deployment(replicas=2, strategy=rolling(count(1), count(0), provisioning_timeout_seconds=60))
    await scenario.ready_on_first_revision()
    await scenario.deploy()
    await scenario.tick()
    await scenario.healthy(revision=2)
    await scenario.tick()
    await rollouts.begin_rollback(scenario.db, scenario.id, actor="bob")
    await scenario.tick()
    await scenario.report(RouteStatus.DEGRADED, revision=1)  # the old revision comes back degraded, never healthy
    await scenario.tick()
    assert await scenario.state() == "DEPLOYING/DEPLOYING_ROLLING_BACK"

    await scenario.shift_time(60)
    await scenario.tick()

    assert await scenario.state() == "READY"
    assert await scenario.live_routes(revision=2) == []
    assert (await scenario.history())[-1] == "reconcile SUCCESS"


async def test_failed_new_routes_are_replaced_then_the_rollout_rolls_back_keeping_capacity(scenario: Scenario) -> None:
    await scenario.given_deployment(replicas=4, strategy=rolling(count(1), count(0), max_retries=1))
    await scenario.ready_on_first_revision()
    await scenario.deploy()
    await scenario.tick()
    await scenario.healthy(revision=2)
    await scenario.tick()  # one new serving, one old stopped, a second new started
    assert await serving(scenario) >= 4

    starting = RouteStatus.PROVISIONING
    await scenario.report(RouteStatus.FAILED_TO_START, revision=2, count=1, among=starting)
    await scenario.tick()
    assert (await scenario.deployment()).attempts == 1
    await scenario.tick()  # the failed one was stopped; this pass starts its replacement
    await scenario.report(RouteStatus.FAILED_TO_START, revision=2, count=1, among=starting)
    await scenario.tick()
    assert await scenario.state() == "DEPLOYING/DEPLOYING_ROLLING_BACK"

    for _ in range(20):
        assert await serving(scenario) >= 4
        if await scenario.state() == "READY":
            break
        await scenario.healthy(revision=1)
        await scenario.tick()
    assert await scenario.state() == "READY"
    assert await scenario.active_revisions() == [1, 1, 1, 1]
    assert await scenario.live_routes(revision=2) == []
    assert (await scenario.deployment()).current_revision_id == scenario.revisions[0]


async def test_a_rolling_provisioning_timeout_rolls_back(scenario: Scenario) -> None:
    await scenario.given_deployment(replicas=2, strategy=rolling(count(1), count(0), provisioning_timeout_seconds=60))
    await scenario.ready_on_first_revision()
    await scenario.deploy()
    await scenario.tick()
    await scenario.shift_time(60)
    await scenario.tick()

    assert await scenario.state() == "READY"
    assert await scenario.active_revisions() == [1, 1]
    assert await scenario.live_routes(revision=2) == []
    assert (await scenario.history())[-2:] == [
        "roll EXPIRED PROVISIONING -> ROLLING_BACK",
        "rollback SUCCESS ROLLING_BACK -> READY",
    ]


async def test_promoting_a_rolling_deployment_is_refused_and_says_why(scenario: Scenario) -> None:
    await scenario.given_deployment(replicas=2, strategy=rolling(count(1), count(0)))
    await scenario.ready_on_first_revision()
    await scenario.deploy()

    with pytest.raises(InvalidState, match="ROLLING strategy"):
        await rollouts.promote(scenario.db, scenario.id, actor="alice")


async def test_scaling_a_ready_rolling_deployment_adds_and_drains_routes(scenario: Scenario, db: Any) -> None:
    await scenario.given_deployment(replicas=2, strategy=rolling(count(1), count(0)))
    await scenario.ready_on_first_revision()

    await deployments.scale(db, scenario.id, 4, actor="alice")
    await scenario.tick()
    await scenario.healthy(revision=1)
    await scenario.tick()
    assert await scenario.active_revisions() == [1, 1, 1, 1]

    await deployments.scale(db, scenario.id, 1, actor="alice")
    await scenario.tick()
    assert await scenario.active_revisions() == [1]


async def test_a_scale_that_leaves_no_room_to_roll_is_refused(scenario: Scenario, db: Any) -> None:
    await scenario.given_deployment(replicas=4, strategy=rolling(count(0), percent(0.5)))
    before = await snapshot(db)

    with pytest.raises(BadUserInput, match="resolve to 0"):
        await deployments.scale(db, scenario.id, 1, actor="alice")  # 50 % of 1 rounds down to 0, and no surge

    assert await snapshot(db) == before
    await deployments.scale(db, scenario.id, 2, actor="alice")


async def test_a_deployment_can_switch_strategy_between_rollouts(scenario: Scenario, db: Any) -> None:
    await scenario.given_deployment(replicas=2, strategy=blue_green())
    await scenario.ready_on_first_revision()

    await deployments.change_strategy(db, scenario.id, rolling(count(1), count(0)), actor="alice")
    await scenario.deploy()
    steps = await roll_out(scenario, revision=2, minimum=2, limit=3)
    assert steps[-1] == (2, 0)

    await deployments.change_strategy(db, scenario.id, blue_green(), actor="alice")
    await scenario.deploy()
    await scenario.tick()
    await scenario.healthy(revision=3)
    await scenario.tick()
    assert await scenario.state() == "DEPLOYING/DEPLOYING_AWAITING_PROMOTION"
    await rollouts.promote(db, scenario.id, actor="alice")
    assert await scenario.active_revisions() == [3, 3]
