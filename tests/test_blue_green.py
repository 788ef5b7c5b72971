"""Blue-green rollouts end to end, with the scheduler driven one pass at a time."""

from datetime import timedelta
from typing import Any

import pytest

from scheduler import deadlines
from store import deployments, rollouts, route_health
from store.errors import Conflict, InvalidState, NotFound
from store.models import RouteStatus, RouteTrafficStatus
from tests.scenario import Scenario, blue_green
from tests.state import snapshot


async def test_a_rollout_provisions_green_without_traffic_then_a_manual_promote_switches_it(
    scenario: Scenario,
) -> None:
    await scenario.given_deployment(replicas=3)
    await scenario.ready_on_first_revision()

    await scenario.deploy()
    await scenario.tick()
    green = await scenario.routes(revision=2)
    assert len(green) == 3
    assert all(r.status is RouteStatus.PROVISIONING for r in green)
    assert all(r.traffic_status is RouteTrafficStatus.INACTIVE and r.traffic_ratio == 0 for r in green)

    await scenario.healthy(revision=2)
    await scenario.tick()
    assert await scenario.state() == "DEPLOYING/DEPLOYING_AWAITING_PROMOTION"
    assert await scenario.active_revisions() == [1, 1, 1]

    promotion = await rollouts.promote(scenario.db, scenario.id, actor="alice")

    assert await scenario.state() == "READY"
    assert (await scenario.deployment()).current_revision_id == scenario.revisions[1]
    assert await scenario.active_revisions() == [2, 2, 2]
    assert sorted(r.id for r in promotion.promoted_routes) == sorted(r.id for r in green)
    assert [r.traffic_ratio for r in promotion.promoted_routes] == [pytest.approx(1 / 3)] * 3
    assert len(promotion.drained_routes) == 3
    assert await scenario.history() == [
        "create SUCCESS - -> PENDING",
        "add_revision SUCCESS",
        "deploy SUCCESS PENDING -> PROVISIONING",
        "provision SUCCESS",
        *["route_health SUCCESS"] * 3,
        "provision SUCCESS PROVISIONING -> AWAITING_PROMOTION",
        "promote SUCCESS AWAITING_PROMOTION -> READY",
        "add_revision SUCCESS",
        "deploy SUCCESS READY -> PROVISIONING",
        "provision SUCCESS",
        *["route_health SUCCESS"] * 3,
        "provision SUCCESS PROVISIONING -> AWAITING_PROMOTION",
        "promote SUCCESS AWAITING_PROMOTION -> READY",
    ]


async def test_the_promotion_is_recorded_with_its_actor_and_what_it_switched(scenario: Scenario, db: Any) -> None:
    await scenario.given_deployment(replicas=2)
    await scenario.awaiting_promotion_of_revision_2()

    await rollouts.promote(db, scenario.id, actor="alice@example.com")

    row = await db.fetch_one(
        "SELECT actor, message FROM deployment_history WHERE deployment_id = :id AND phase = 'promote' "
        "ORDER BY seq DESC LIMIT 1",
        {"id": scenario.id},
    )
    assert row["actor"] == "alice@example.com"
    assert row["message"] == "promoted revision 2 over revision 1: 2 routes active, 2 draining after 30 s"


async def test_a_first_deploy_is_promoted_as_soon_as_all_green_routes_are_healthy(scenario: Scenario) -> None:
    await scenario.given_deployment(replicas=2)
    await scenario.deploy()
    await scenario.tick()
    await scenario.healthy(revision=1, count=1)
    await scenario.tick()
    assert await scenario.state() == "DEPLOYING/DEPLOYING_PROVISIONING"
    assert await scenario.active_revisions() == []

    await scenario.healthy(revision=1)
    await scenario.tick()

    assert await scenario.state() == "READY"
    assert await scenario.active_revisions() == [1, 1]
    assert (await scenario.history())[-2:] == [
        "provision SUCCESS PROVISIONING -> AWAITING_PROMOTION",
        "promote SUCCESS AWAITING_PROMOTION -> READY",
    ]


async def test_auto_promotion_waits_for_the_delay_counted_from_awaiting_promotion(scenario: Scenario) -> None:
    await scenario.given_deployment(replicas=2, strategy=blue_green(auto_promote=True, promote_delay_seconds=60))
    await scenario.ready_on_first_revision()
    await scenario.deploy()
    await scenario.tick()
    await scenario.shift_time(50)  # provisioning took 50 s: that must not count toward the delay
    await scenario.healthy(revision=2)
    await scenario.tick()
    assert await scenario.state() == "DEPLOYING/DEPLOYING_AWAITING_PROMOTION"
    entered = (await scenario.deployment()).phase_started_at
    assert deadlines.next_action_at(await scenario.deployment()) == entered + timedelta(seconds=60)

    await scenario.shift_time(55)
    await scenario.tick()
    assert await scenario.state() == "DEPLOYING/DEPLOYING_AWAITING_PROMOTION"

    await scenario.shift_time(5)
    await scenario.tick()
    assert await scenario.state() == "READY"
    assert await scenario.active_revisions() == [2, 2]
    assert (await scenario.history())[-1] == "promote SUCCESS AWAITING_PROMOTION -> READY"


async def test_a_promotion_timeout_rolls_back_and_the_blue_routes_keep_serving(scenario: Scenario) -> None:
    await scenario.given_deployment(replicas=2, strategy=blue_green(promotion_timeout_seconds=300))
    await scenario.awaiting_promotion_of_revision_2()

    await scenario.shift_time(299)
    await scenario.tick()
    assert await scenario.state() == "DEPLOYING/DEPLOYING_AWAITING_PROMOTION"
    await scenario.shift_time(1)
    await scenario.tick()

    assert await scenario.state() == "READY"
    deployment = await scenario.deployment()
    assert deployment.current_revision_id == scenario.revisions[0]
    assert deployment.deploying_revision_id is None
    assert await scenario.active_revisions() == [1, 1]
    assert all(r.status is RouteStatus.TERMINATING for r in await scenario.routes(revision=2))
    assert (await scenario.history())[-2:] == [
        "promote EXPIRED AWAITING_PROMOTION -> ROLLING_BACK",
        "rollback SUCCESS ROLLING_BACK -> READY",
    ]


async def test_provisioning_that_only_waits_still_times_out(scenario: Scenario) -> None:
    await scenario.given_deployment(replicas=2, strategy=blue_green(provisioning_timeout_seconds=120))
    await scenario.ready_on_first_revision()
    await scenario.deploy()
    await scenario.tick()  # green routes created; nobody ever reports them

    await scenario.shift_time(119)
    await scenario.tick()
    assert await scenario.state() == "DEPLOYING/DEPLOYING_PROVISIONING"
    await scenario.shift_time(1)
    await scenario.tick()

    assert await scenario.state() == "READY"
    assert await scenario.active_revisions() == [1, 1]
    assert (await scenario.history())[-2:] == [
        "provision EXPIRED PROVISIONING -> ROLLING_BACK",
        "rollback SUCCESS ROLLING_BACK -> READY",
    ]


async def test_a_failed_first_deploy_rolls_back_to_pending(scenario: Scenario) -> None:
    await scenario.given_deployment(replicas=1, strategy=blue_green(provisioning_timeout_seconds=60))
    await scenario.deploy()
    await scenario.tick()
    await scenario.shift_time(60)
    await scenario.tick()

    deployment = await scenario.deployment()
    assert await scenario.state() == "PENDING"
    assert deployment.current_revision_id is None and deployment.deploying_revision_id is None
    assert await scenario.live_routes() == []


async def test_failed_green_routes_are_replaced_until_retries_run_out_then_it_rolls_back(scenario: Scenario) -> None:
    await scenario.given_deployment(replicas=2, strategy=blue_green(max_retries=2))
    await scenario.ready_on_first_revision()
    await scenario.deploy()
    await scenario.tick()

    for attempt in (1, 2):
        await scenario.report(RouteStatus.FAILED_TO_START, revision=2, count=1)
        await scenario.tick()
        assert await scenario.state() == "DEPLOYING/DEPLOYING_PROVISIONING"
        assert (await scenario.deployment()).attempts == attempt
        assert len(await scenario.live_routes(revision=2)) == 2  # the failed one was replaced
    await scenario.report(RouteStatus.FAILED_TO_START, revision=2, count=1)
    await scenario.tick()

    assert await scenario.state() == "READY"
    assert await scenario.active_revisions() == [1, 1]
    history = await scenario.history()
    retries = [line for line in history if "NEED_RETRY" in line]
    assert retries == ["provision NEED_RETRY"]  # two retries merged into one row
    assert history[-2:] == ["provision GIVE_UP PROVISIONING -> ROLLING_BACK", "rollback SUCCESS ROLLING_BACK -> READY"]


async def test_retries_merge_into_one_history_row_with_the_attempt_count(scenario: Scenario, db: Any) -> None:
    await scenario.given_deployment(replicas=1, strategy=blue_green(max_retries=5))
    await scenario.deploy()
    await scenario.tick()
    for _ in range(3):
        await scenario.report(RouteStatus.UNHEALTHY, revision=1, count=1)
        await scenario.tick()

    row = await db.fetch_one(
        "SELECT attempts, message, error_code FROM deployment_history WHERE deployment_id = :id AND result = "
        "'NEED_RETRY'",
        {"id": scenario.id},
    )
    assert row["attempts"] == 3
    assert row["error_code"] == "ROUTE_FAILED"
    assert "attempt 3 of 5" in row["message"]


async def test_blue_routes_drain_only_after_the_scale_down_delay(scenario: Scenario) -> None:
    await scenario.given_deployment(replicas=2, strategy=blue_green(scale_down_delay_seconds=30))
    await scenario.awaiting_promotion_of_revision_2()
    await rollouts.promote(scenario.db, scenario.id, actor="alice")

    await scenario.tick()
    blue = await scenario.routes(revision=1)
    assert [r.status for r in blue] == [RouteStatus.HEALTHY] * 2
    assert [r.traffic_status for r in blue] == [RouteTrafficStatus.INACTIVE] * 2

    await scenario.shift_time(29)
    await scenario.tick()
    assert [r.status for r in await scenario.routes(revision=1)] == [RouteStatus.HEALTHY] * 2

    await scenario.shift_time(1)
    await scenario.tick()
    assert [r.status for r in await scenario.routes(revision=1)] == [RouteStatus.TERMINATING] * 2
    assert await scenario.active_revisions() == [2, 2]
    assert (await scenario.history())[-1] == "reconcile SUCCESS"


async def test_a_manual_rollback_records_its_reason_and_restores_the_old_revision(scenario: Scenario, db: Any) -> None:
    await scenario.given_deployment(replicas=2)
    await scenario.awaiting_promotion_of_revision_2()

    await rollouts.begin_rollback(db, scenario.id, actor="bob", reason="latency regression")
    await scenario.tick()

    assert await scenario.state() == "READY"
    assert await scenario.active_revisions() == [1, 1]
    row = await db.fetch_one(
        "SELECT actor, message FROM deployment_history WHERE deployment_id = :id AND phase = 'rollback' "
        "ORDER BY seq LIMIT 1",
        {"id": scenario.id},
    )
    assert row["actor"] == "bob"
    assert "latency regression" in row["message"]


async def test_a_dry_run_reports_the_switch_and_changes_nothing(scenario: Scenario, db: Any) -> None:
    await scenario.given_deployment(replicas=2)
    await scenario.awaiting_promotion_of_revision_2()
    before = await snapshot(db)

    promotion = await rollouts.promote(db, scenario.id, actor="alice", dry_run=True)

    assert promotion.dry_run is True
    assert {r.revision_id for r in promotion.promoted_routes} == {scenario.revisions[1]}
    assert {r.revision_id for r in promotion.drained_routes} == {scenario.revisions[0]}
    assert await snapshot(db) == before


async def promotable(scenario: Scenario) -> None:
    await scenario.given_deployment(replicas=2)
    await scenario.awaiting_promotion_of_revision_2()


async def test_a_stale_expected_revision_is_a_conflict_and_changes_nothing(scenario: Scenario, db: Any) -> None:
    await promotable(scenario)
    before = await snapshot(db)

    with pytest.raises(Conflict):
        await rollouts.promote(db, scenario.id, actor="alice", expected_revision_id=scenario.revisions[0])

    assert await snapshot(db) == before
    await rollouts.promote(db, scenario.id, actor="alice", expected_revision_id=scenario.revisions[1])
    assert await scenario.state() == "READY"


async def test_promotion_is_refused_with_too_few_healthy_green_routes(scenario: Scenario, db: Any) -> None:
    await promotable(scenario)
    await scenario.report(RouteStatus.DEGRADED, revision=2, count=1)
    before = await snapshot(db)

    with pytest.raises(InvalidState, match="1 of 2 green routes"):
        await rollouts.promote(db, scenario.id, actor="alice")

    assert await snapshot(db) == before


async def to_pending(s: Scenario) -> None:
    await s.given_deployment()


async def to_ready(s: Scenario) -> None:
    await s.given_deployment()
    await s.ready_on_first_revision()


async def to_provisioning_with_no_healthy_green(s: Scenario) -> None:
    await to_ready(s)
    await s.deploy()
    await s.tick()


async def to_rolling_back(s: Scenario) -> None:
    await to_provisioning_with_no_healthy_green(s)
    await rollouts.begin_rollback(s.db, s.id, actor="bob")


async def to_destroyed(s: Scenario) -> None:
    await to_ready(s)
    await deployments.destroy(s.db, s.id, actor="bob")
    await s.tick()


@pytest.mark.parametrize(
    "given", [to_pending, to_ready, to_provisioning_with_no_healthy_green, to_rolling_back, to_destroyed]
)
async def test_promotion_is_refused_outside_awaiting_promotion_and_changes_nothing(
    scenario: Scenario, db: Any, given: Any
) -> None:
    await given(scenario)
    before = await snapshot(db)

    with pytest.raises(InvalidState):
        await rollouts.promote(db, scenario.id, actor="alice")

    assert await snapshot(db) == before


async def test_deploying_during_a_rollout_is_a_conflict(scenario: Scenario, db: Any) -> None:
    await to_provisioning_with_no_healthy_green(scenario)
    third = await scenario.add_revision()
    before = await snapshot(db)

    with pytest.raises(Conflict, match="promote or roll back the rollout in flight before you deploy again"):
        await rollouts.deploy_revision(db, scenario.id, third, actor="alice")

    assert await snapshot(db) == before


async def test_deploying_the_current_revision_or_another_deployments_is_invalid(scenario: Scenario, db: Any) -> None:
    await to_ready(scenario)
    other = Scenario(db)
    await other.given_deployment()
    foreign = await other.add_revision()
    before = await snapshot(db)

    with pytest.raises(InvalidState, match="already serving"):
        await rollouts.deploy_revision(db, scenario.id, scenario.revisions[0], actor="alice")
    with pytest.raises(NotFound, match="has no revision"):  # as a missing one: it may be another project's
        await rollouts.deploy_revision(db, scenario.id, foreign, actor="alice")

    assert await snapshot(db) == before


async def test_a_destroyed_deployment_stops_its_routes_and_frees_its_name(scenario: Scenario, db: Any) -> None:
    await to_ready(scenario)
    await deployments.destroy(db, scenario.id, actor="bob")
    assert await scenario.state() == "DESTROYING"
    await scenario.tick()

    assert await scenario.state() == "DESTROYED"
    assert await scenario.live_routes() == []
    assert await scenario.active_revisions() == []


async def test_scaling_a_ready_blue_green_deployment_starts_routes_that_take_traffic_when_healthy(
    scenario: Scenario, db: Any
) -> None:
    await to_ready(scenario)

    await deployments.scale(db, scenario.id, 3, actor="alice")
    await scenario.tick()
    assert len(await scenario.live_routes(revision=1)) == 3
    assert await scenario.active_revisions() == [1, 1]
    await scenario.healthy(revision=1)
    await scenario.tick()
    assert await scenario.active_revisions() == [1, 1, 1]

    await deployments.scale(db, scenario.id, 1, actor="alice")
    await scenario.tick()
    assert await scenario.active_revisions() == [1]
    assert len(await scenario.live_routes(revision=1)) == 1


async def test_a_terminated_route_takes_no_more_reports(scenario: Scenario, db: Any) -> None:
    await to_ready(scenario)
    await deployments.destroy(db, scenario.id, actor="bob")
    await scenario.tick()
    route = (await scenario.routes())[0]
    await route_health.report_route_health(db, route.id, RouteStatus.TERMINATED, actor="orchestrator")
    before = await snapshot(db)

    with pytest.raises(InvalidState, match="TERMINATED"):
        await route_health.report_route_health(db, route.id, RouteStatus.HEALTHY, actor="orchestrator")

    assert await snapshot(db) == before


async def test_a_passed_auto_promote_time_does_not_spin_the_scheduler(scenario: Scenario) -> None:
    await scenario.given_deployment(replicas=2, strategy=blue_green(auto_promote=True, promote_delay_seconds=60))
    await scenario.awaiting_promotion_of_revision_2()
    await scenario.report(RouteStatus.DEGRADED, revision=2, count=1)
    await scenario.shift_time(61)

    steps = await scenario.tick()

    assert steps <= 2  # it looks once, then waits for the green route to be healthy again
    assert await scenario.state() == "DEPLOYING/DEPLOYING_AWAITING_PROMOTION"
    await scenario.healthy(revision=2)
    await scenario.tick()
    assert await scenario.state() == "READY"


async def test_a_blue_route_that_dies_during_a_rollout_leaves_its_share_to_the_others(scenario: Scenario) -> None:
    await scenario.given_deployment(replicas=2)
    await scenario.ready_on_first_revision()
    await scenario.deploy()
    await scenario.tick()

    await scenario.report(RouteStatus.FAILED_TO_START, revision=1, count=1)

    active = await scenario.routes(traffic=RouteTrafficStatus.ACTIVE)
    assert [r.traffic_ratio for r in active] == [1.0]


async def test_green_routes_stopped_while_awaiting_promotion_are_started_again(scenario: Scenario) -> None:
    await scenario.given_deployment(replicas=2)
    await scenario.awaiting_promotion_of_revision_2()
    [gone, _] = await scenario.routes(revision=2)

    await route_health.report_route_health(scenario.db, gone.id, RouteStatus.TERMINATED, actor="orchestrator")
    await scenario.tick()

    assert len(await scenario.live_routes(revision=2)) == 2
    await scenario.healthy(revision=2)
    await rollouts.promote(scenario.db, scenario.id, actor="alice")
    assert await scenario.active_revisions() == [2, 2]


async def test_old_blue_routes_still_draining_when_the_next_rollout_starts_are_drained_on_time(
    scenario: Scenario,
) -> None:
    await scenario.given_deployment(replicas=1, strategy=blue_green(scale_down_delay_seconds=30))
    await scenario.awaiting_promotion_of_revision_2()
    await rollouts.promote(scenario.db, scenario.id, actor="alice")
    await scenario.deploy()  # revision 3 starts while revision 1 is still kept warm
    await scenario.tick()

    await scenario.shift_time(30)
    await scenario.tick()

    assert [r.status for r in await scenario.routes(revision=1)] == [RouteStatus.TERMINATING]
    assert await scenario.state() == "DEPLOYING/DEPLOYING_PROVISIONING"
