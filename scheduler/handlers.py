"""Handlers: pure functions of (deployment, routes, now) to a Decision. They decide; the store applies.

`routes` are the deployment's routes that are not TERMINATED, oldest first; `now` is the database's clock.
"""

from collections.abc import Mapping, Sequence
from datetime import datetime

from scheduler.deadlines import (
    auto_promotion_due,
    promotion_deadline,
    provisioning_deadline,
    scale_downs,
)
from scheduler.decisions import Actions, Decision, Outcome
from store.models import (
    LIVE_ROUTE_STATUSES,
    AnalysisPhase,
    AnalysisRun,
    AnalysisRunKind,
    Deployment,
    DeploymentStrategyType,
    Route,
    RouteStatus,
    RouteTrafficStatus,
)
from store.rollouts import previous_routes

Runs = Mapping[AnalysisRunKind, AnalysisRun]  # the newest run of each kind of the revision being judged
NO_RUNS: Runs = {}
FAILED = frozenset({RouteStatus.FAILED_TO_START, RouteStatus.UNHEALTHY})
SERVING = frozenset({RouteStatus.HEALTHY, RouteStatus.DEGRADED})
# Which routes go first when some must: the least useful, oldest first among equals.
DRAIN_ORDER = {
    RouteStatus.FAILED_TO_START: 0,
    RouteStatus.PROVISIONING: 1,
    RouteStatus.UNHEALTHY: 2,
    RouteStatus.DEGRADED: 3,
    RouteStatus.HEALTHY: 4,
}


def _ids(routes: Sequence[Route]) -> tuple[str, ...]:
    return tuple(r.id for r in routes)


def drain_order(routes: Sequence[Route]) -> list[Route]:
    return sorted(routes, key=lambda r: (DRAIN_ORDER.get(r.status, 0), r.seq))


def not_stopping(routes: Sequence[Route]) -> list[Route]:
    return [r for r in routes if r.status is not RouteStatus.TERMINATING]


def of_revision(routes: Sequence[Route], revision_id: str | None) -> list[Route]:
    return [r for r in not_stopping(routes) if r.revision_id == revision_id]


def expired_or_failed(
    deployment: Deployment, green: Sequence[Route], now: datetime, deadline: datetime | None, *, expired: Decision
) -> Decision | None:
    """What comes before waiting for green routes: `expired` past the phase's deadline, else replacing failed ones
    (a retry, rechecked by the deadline)."""
    if deadline is not None and now >= deadline:
        return expired
    return replace_failed(deployment, green, deadline)


def replace_failed(deployment: Deployment, green: Sequence[Route], recheck_at: datetime | None) -> Decision | None:
    failed = [r for r in green if r.status in FAILED]
    if not failed:
        return None
    statuses = ", ".join(sorted({r.status.value for r in failed}))
    return Decision(
        Outcome.NEED_RETRY,
        f"{len(failed)} new route(s) failed ({statuses}); replacing them",
        Actions(terminate=_ids(failed), create_routes=len(failed), create_revision_id=deployment.deploying_revision_id),
        recheck_at=recheck_at,
        error_code="ROUTE_FAILED",
    )


def earliest(*times: datetime | None) -> datetime | None:
    return min((t for t in times if t is not None), default=None)


def provision_blue_green(
    deployment: Deployment, routes: Sequence[Route], now: datetime, runs: Runs = NO_RUNS
) -> Decision:
    """Start `replicas` green routes without traffic; succeed once all are HEALTHY."""
    timeout = deployment.strategy.provisioning_timeout_seconds
    deadline = provisioning_deadline(deployment)
    green = of_revision(routes, deployment.deploying_revision_id)
    healthy = [r for r in green if r.status is RouteStatus.HEALTHY]
    expired = Decision(
        Outcome.EXPIRED,
        f"{len(healthy)} of {deployment.replicas} green routes healthy after the {timeout} s provisioning timeout",
        error_code="PROVISIONING_TIMEOUT",
    )
    failure = expired_or_failed(deployment, green, now, deadline, expired=expired)
    if failure:
        return failure
    due, next_drain = scale_downs(routes, now)
    missing = max(0, deployment.replicas - len(green))
    if missing == 0 and len(healthy) >= deployment.replicas:
        return Decision(
            Outcome.SUCCESS, f"all {deployment.replicas} green routes are healthy", Actions(terminate=_ids(due))
        )
    actions = Actions(create_routes=missing, create_revision_id=deployment.deploying_revision_id, terminate=_ids(due))
    message = f"started {missing} green route(s) without traffic" if missing else "green routes starting"
    if due:
        message += f"; drained {len(due)} old route(s) after the scale-down delay"
    return Decision(Outcome.WAIT, message, actions, recheck_at=earliest(deadline, next_drain))


def await_promotion(deployment: Deployment, routes: Sequence[Route], now: datetime, runs: Runs = NO_RUNS) -> Decision:
    """Promote a first deploy at once, or auto-promote after the delay; roll back after the promotion timeout.
    Meanwhile keep `replicas` green routes (replacing failed ones) and finish draining older blue routes."""
    spec = deployment.strategy.blue_green_spec
    green = of_revision(routes, deployment.deploying_revision_id)
    all_healthy = sum(r.status is RouteStatus.HEALTHY for r in green) >= deployment.replicas
    timeout_at = promotion_deadline(deployment)
    expired = Decision(
        Outcome.EXPIRED,
        f"not promoted within the {spec.promotion_timeout_seconds} s promotion timeout",
        error_code="PROMOTION_TIMEOUT",
    )
    failure = expired_or_failed(deployment, green, now, timeout_at, expired=expired)
    if failure:
        return failure
    due, next_drain = scale_downs(routes, now)
    missing = max(0, deployment.replicas - len(green))
    if missing:
        return Decision(
            Outcome.WAIT,
            f"started {missing} green route(s) to replace stopped ones",
            Actions(create_routes=missing, create_revision_id=deployment.deploying_revision_id, terminate=_ids(due)),
            recheck_at=earliest(timeout_at, next_drain),
        )
    if all_healthy and spec.pre_promotion_analysis is not None:
        run = runs.get(AnalysisRunKind.PRE_PROMOTION)
        if run is None:
            return Decision(Outcome.WAIT, "all green routes healthy: pre-promotion analysis starts",
                            Actions(terminate=_ids(due), start_analysis=AnalysisRunKind.PRE_PROMOTION),
                            recheck_at=earliest(timeout_at, next_drain))  # fmt: skip
        if run.phase in (AnalysisPhase.FAILED, AnalysisPhase.ERROR):
            return Decision(
                Outcome.GIVE_UP,
                f"pre-promotion analysis {run.phase} ({run.failed} of {run.passed + run.failed} checks failed)",
                error_code="ANALYSIS_FAILED",
            )
        if run.phase is AnalysisPhase.RUNNING:  # its end wakes the deployment
            future = [t for t in (timeout_at, next_drain) if t is not None and t > now]
            message = f"drained {len(due)} old route(s) after the scale-down delay" if due else "analysis running"
            return Decision(Outcome.WAIT, message, Actions(terminate=_ids(due)), recheck_at=min(future, default=None))
    promote_at = auto_promotion_due(deployment)
    if all_healthy and deployment.current_revision_id is None:
        return Decision(Outcome.SUCCESS, "first deploy: nothing to switch from", Actions(promote=True))
    if all_healthy and promote_at is not None and now >= promote_at:
        return Decision(Outcome.SUCCESS, f"auto-promoting after {spec.promote_delay_seconds} s", Actions(promote=True))
    # Only future times: a passed auto-promote time waits for the green routes to be healthy again (an event).
    future = [t for t in (promote_at, timeout_at, next_drain) if t is not None and t > now]
    message = f"drained {len(due)} old route(s) after the scale-down delay" if due else "awaiting promotion"
    return Decision(Outcome.WAIT, message, Actions(terminate=_ids(due)), recheck_at=min(future, default=None))


def roll_back(deployment: Deployment, routes: Sequence[Route], now: datetime, runs: Runs = NO_RUNS) -> Decision:
    """Stop every route of the abandoned revision. Blue-green: the old routes kept their traffic throughout.
    Rolling: roll back the same way forward, so that serving never drops below `replicas - maxUnavailable`."""
    if deployment.strategy.type is DeploymentStrategyType.ROLLING and deployment.current_revision_id is not None:
        timeout = deployment.strategy.provisioning_timeout_seconds
        deadline = provisioning_deadline(deployment)
        if now >= deadline:
            # READY's reconciliation stops what is left of the new revision and keeps restoring the old one.
            return Decision(Outcome.EXPIRED, f"old revision not fully restored within {timeout} s; READY takes over")
        step = rolling_step(deployment, routes, deployment.current_revision_id)
        return Decision(step.outcome, step.message, step.actions, earliest(step.recheck_at, deadline), step.error_code)
    new_routes = of_revision(routes, deployment.deploying_revision_id)
    kept = "the current revision keeps serving" if deployment.current_revision_id else "nothing was serving"
    return Decision(
        Outcome.SUCCESS,
        f"stopped {len(new_routes)} route(s) of the abandoned revision; {kept}",
        Actions(terminate=_ids(new_routes)),
    )


def destroy(deployment: Deployment, routes: Sequence[Route], now: datetime, runs: Runs = NO_RUNS) -> Decision:
    stopping = not_stopping(routes)
    return Decision(Outcome.SUCCESS, f"stopped {len(stopping)} route(s)", Actions(terminate=_ids(stopping)))


def reconcile(deployment: Deployment, routes: Sequence[Route], now: datetime, runs: Runs = NO_RUNS) -> Decision:
    """READY: drain blue routes whose scale-down delay passed, keep `replicas` routes of the current revision,
    and share the traffic equally among those that serve. While a post-promotion analysis runs, the blue routes stay
    warm whatever their delay says; when it fails, the promotion is reverted."""
    due, next_drain = scale_downs(routes, now)
    post = runs.get(AnalysisRunKind.POST_PROMOTION)
    if post is not None and post.phase is AnalysisPhase.RUNNING:
        due, next_drain = [], None  # the run's end wakes the deployment
    elif post is not None and post.phase in (AnalysisPhase.FAILED, AnalysisPhase.ERROR):
        if previous_routes(deployment, list(routes)):
            why = f"post-promotion analysis {post.phase} ({post.failed} of {post.passed + post.failed} checks failed)"
            return Decision(Outcome.WAIT, why, Actions(revert=True))
    current = [r for r in of_revision(routes, deployment.current_revision_id) if r.terminate_after is None]
    # Live routes of another revision that are not kept warm (left by an abandoned step): nothing needs them.
    strays = [
        r for r in not_stopping(routes) if r.revision_id != deployment.current_revision_id and r.terminate_after is None
    ]
    failed = [r for r in current if r.status is RouteStatus.FAILED_TO_START]
    live = [r for r in current if r.status in LIVE_ROUTE_STATUSES]
    surplus = drain_order(live)[: max(0, len(live) - deployment.replicas)]
    keep = [r for r in live if r not in surplus]
    missing = deployment.replicas - len(keep)
    serving = [r for r in keep if r.status in SERVING]
    active_now = {r.id: r.traffic_ratio for r in routes if r.traffic_status is RouteTrafficStatus.ACTIVE}
    traffic: tuple[str, ...] = ()
    # Never take the last traffic away: with nothing serving, the routes that have traffic keep it.
    if serving and active_now != {r.id: 1.0 / len(serving) for r in serving}:
        traffic = _ids(serving)
    actions = Actions(
        terminate=_ids(due + strays + failed + surplus),
        create_routes=max(0, missing),
        create_revision_id=deployment.current_revision_id,
        traffic=traffic,
    )
    parts = []
    if due:
        parts.append(f"drained {len(due)} old route(s) after the scale-down delay")
    if strays:
        parts.append(f"stopped {len(strays)} route(s) of other revisions")
    if failed:
        parts.append(f"replacing {len(failed)} route(s) that failed to start")
    if surplus:
        parts.append(f"stopped {len(surplus)} surplus route(s)")
    if missing > 0:
        parts.append(f"started {missing} route(s)")
    if traffic:
        parts.append(f"{len(traffic)} route(s) share the traffic")
    return Decision(Outcome.WAIT, "; ".join(parts) or "nothing to do", actions, recheck_at=next_drain)


def rolling_step(deployment: Deployment, routes: Sequence[Route], target_revision_id: str | None) -> Decision:
    """One pass of a rolling replacement towards `replicas` HEALTHY routes of the target revision.

    Routes of every other revision are old. New routes take traffic as soon as they are HEALTHY; the total stays
    within `replicas + maxSurge`; old routes stop, least healthy first, only while at least
    `replicas - maxUnavailable` routes stay HEALTHY and ACTIVE. TERMINATING routes count neither as serving nor
    toward the surge.
    """
    spec = deployment.strategy.rolling_update_spec
    surge = spec.max_surge.resolve(deployment.replicas, round_up=True)
    unavailable = spec.max_unavailable.resolve(deployment.replicas, round_up=False)
    minimum_serving = deployment.replicas - unavailable
    new = of_revision(routes, target_revision_id)
    old = [r for r in not_stopping(routes) if r.revision_id != target_revision_id]

    failed = [r for r in new if r.status in FAILED]
    if failed:
        statuses = ", ".join(sorted({r.status.value for r in failed}))
        return Decision(
            Outcome.NEED_RETRY,
            f"{len(failed)} new route(s) failed ({statuses}); replacing them",
            Actions(terminate=_ids(failed)),
            error_code="ROUTE_FAILED",
        )

    def serving(r: Route) -> bool:
        return r.status is RouteStatus.HEALTHY and (r in new or r.traffic_status is RouteTrafficStatus.ACTIVE)

    serving_count = sum(serving(r) for r in new + old)
    stop: list[Route] = []
    for r in drain_order(old):
        if not serving(r):
            stop.append(r)  # serves nothing: stopping it costs nothing and frees room for a new route
        elif serving_count - 1 >= minimum_serving:
            stop.append(r)
            serving_count -= 1
    total = len(new) + len(old) - len(stop)
    room = deployment.replicas + surge - total if old else deployment.replicas - len(new)
    create = max(0, min(deployment.replicas - len(new), room))

    # New routes earn traffic by being HEALTHY; a route that already has traffic keeps it while DEGRADED.
    takes_traffic = [
        r
        for r in new
        if r.status is RouteStatus.HEALTHY
        or (r.status is RouteStatus.DEGRADED and r.traffic_status is RouteTrafficStatus.ACTIVE)
    ] + [r for r in old if r not in stop and r.status in SERVING and r.traffic_status is RouteTrafficStatus.ACTIVE]
    active_now = {r.id: r.traffic_ratio for r in routes if r.traffic_status is RouteTrafficStatus.ACTIVE}
    traffic = (
        _ids(takes_traffic)
        if takes_traffic and active_now != dict.fromkeys(_ids(takes_traffic), 1.0 / len(takes_traffic))
        else ()
    )
    actions = Actions(
        terminate=_ids(stop), create_routes=create, create_revision_id=target_revision_id, traffic=traffic
    )
    healthy_new = sum(r.status is RouteStatus.HEALTHY for r in new)
    summary = (
        f"{healthy_new} of {deployment.replicas} new routes healthy, {len(old) - len(stop)} old left"
        f" (surge {surge}, unavailable {unavailable})"
    )
    if len(old) == len(stop) and healthy_new >= deployment.replicas and create == 0:
        return Decision(Outcome.SUCCESS, f"rolled out: {summary}", actions)
    return Decision(Outcome.WAIT, summary if actions else f"waiting: {summary}", actions)


def provision_rolling(deployment: Deployment, routes: Sequence[Route], now: datetime, runs: Runs = NO_RUNS) -> Decision:
    timeout = deployment.strategy.provisioning_timeout_seconds
    deadline = provisioning_deadline(deployment)
    if now >= deadline:
        return Decision(
            Outcome.EXPIRED,
            f"not rolled out within the {timeout} s provisioning timeout",
            error_code="PROVISIONING_TIMEOUT",
        )
    decision = rolling_step(deployment, routes, deployment.deploying_revision_id)
    return Decision(decision.outcome, decision.message, decision.actions, deadline, decision.error_code)
