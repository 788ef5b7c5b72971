"""Handlers: pure functions of (deployment, routes, now) to a Decision. They decide; the store applies.

`routes` are the deployment's routes that are not TERMINATED, oldest first; `now` is the database's clock.
"""

from collections.abc import Mapping, Sequence
from datetime import datetime

from scheduler.deadlines import (
    auto_promotion_due,
    canary_pause_due,
    promotion_deadline,
    provisioning_deadline,
    scale_downs,
)
from scheduler.decisions import Actions, CanaryMove, Decision, Outcome
from store.governance import describe_approvals, describe_freeze
from store.models import (
    LIVE_ROUTE_STATUSES,
    UNGOVERNED,
    AnalysisPhase,
    AnalysisRun,
    AnalysisRunKind,
    Deployment,
    DeploymentStrategyType,
    Governance,
    Route,
    RouteStatus,
    RouteTrafficStatus,
    canary_routes,
)
from store.rollouts import previous_routes

Runs = Mapping[AnalysisRunKind, AnalysisRun]  # the newest run of each kind of the revision being judged
NO_RUNS: Runs = {}
NO_ACTIONS = Actions()
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
    deployment: Deployment, routes: Sequence[Route], now: datetime, runs: Runs = NO_RUNS, rules: Governance = UNGOVERNED
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


def await_promotion(
    deployment: Deployment, routes: Sequence[Route], now: datetime, runs: Runs = NO_RUNS, rules: Governance = UNGOVERNED
) -> Decision:
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
    due_now = deployment.current_revision_id is None or (promote_at is not None and now >= promote_at)
    held = governance_hold(rules) if all_healthy and due_now else None
    if held is not None:  # an approval (an event) or the freeze window's end moves it on
        message, until = held
        future = [t for t in (until, timeout_at, next_drain) if t is not None and t > now]
        if due:
            message = f"drained {len(due)} old route(s) after the scale-down delay; {message}"
        return Decision(Outcome.WAIT, message, Actions(terminate=_ids(due)), recheck_at=min(future, default=None))
    if all_healthy and deployment.current_revision_id is None:
        return Decision(Outcome.SUCCESS, "first deploy: nothing to switch from", Actions(promote=True))
    if all_healthy and promote_at is not None and now >= promote_at:
        return Decision(Outcome.SUCCESS, f"auto-promoting after {spec.promote_delay_seconds} s", Actions(promote=True))
    # Only future times: a passed auto-promote time waits for the green routes to be healthy again (an event).
    future = [t for t in (promote_at, timeout_at, next_drain) if t is not None and t > now]
    message = f"drained {len(due)} old route(s) after the scale-down delay" if due else "awaiting promotion"
    return Decision(Outcome.WAIT, message, Actions(terminate=_ids(due)), recheck_at=min(future, default=None))


def governance_hold(rules: Governance) -> tuple[str, datetime | None] | None:
    """What holds an automatic promotion besides routes and analyses (SPEC §8), and until when (None: until an
    event, an approval); None when nothing does."""
    if rules.hold == "APPROVALS":
        return f"promotion waits for {rules.missing_approvals} more approval(s): {describe_approvals(rules)}", None
    if rules.hold == "FREEZE_WINDOW" and rules.freeze is not None:
        return f"auto-promotion held by {describe_freeze(rules.freeze)}", rules.freeze.ends_at
    return None


def roll_back(
    deployment: Deployment, routes: Sequence[Route], now: datetime, runs: Runs = NO_RUNS, rules: Governance = UNGOVERNED
) -> Decision:
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


def destroy(
    deployment: Deployment, routes: Sequence[Route], now: datetime, runs: Runs = NO_RUNS, rules: Governance = UNGOVERNED
) -> Decision:
    stopping = not_stopping(routes)
    return Decision(Outcome.SUCCESS, f"stopped {len(stopping)} route(s)", Actions(terminate=_ids(stopping)))


def reconcile(
    deployment: Deployment, routes: Sequence[Route], now: datetime, runs: Runs = NO_RUNS, rules: Governance = UNGOVERNED
) -> Decision:
    """READY: drain blue routes whose scale-down delay passed, keep `replicas` routes of the current revision,
    and share the traffic equally among those that serve. While a post-promotion analysis runs, the blue routes stay
    warm whatever their delay says; when it fails, the promotion is reverted."""
    due, next_drain = scale_downs(routes, now)
    post = runs.get(AnalysisRunKind.POST_PROMOTION)
    if post is not None and post.phase is AnalysisPhase.RUNNING:
        due, next_drain = [], None  # the run's end wakes the deployment
    elif post is not None and post.phase in (AnalysisPhase.FAILED, AnalysisPhase.ERROR):
        why = f"post-promotion analysis {post.phase} ({post.failed} of {post.passed + post.failed} checks failed)"
        if previous_routes(deployment, list(routes)):
            return Decision(Outcome.WAIT, why, Actions(revert=True))
        return Decision(Outcome.WAIT, f"{why}, but the previous revision has no healthy routes kept warm left: "
                        "nothing to revert to; roll out a good revision", Actions(cannot_revert=True),
                        error_code="CANNOT_REVERT")  # fmt: skip
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


def provision_rolling(
    deployment: Deployment, routes: Sequence[Route], now: datetime, runs: Runs = NO_RUNS, rules: Governance = UNGOVERNED
) -> Decision:
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


# --- canary (SPEC §6) ---------------------------------------------------------------------------------------------


def canary_ratios(deployment: Deployment, routes: Sequence[Route], weight: int) -> tuple[tuple[str, float], ...]:
    """Who takes which share at `weight` percent: up to max(1, ceil(replicas·weight/100)) HEALTHY routes of the
    deploying revision share `weight` %, the current revision's serving routes the rest. A side with no route to
    take its share leaves it to the other; with nothing to serve at all, nothing changes (empty)."""
    green = [r for r in of_revision(routes, deployment.deploying_revision_id) if r.status is RouteStatus.HEALTHY]
    green = green[: canary_routes(deployment.replicas, weight)] if weight > 0 else []
    current = [
        r
        for r in of_revision(routes, deployment.current_revision_id)
        if r.status in SERVING and r.terminate_after is None and deployment.current_revision_id is not None
    ]
    share = weight / 100 if green and current else (1.0 if green else 0.0)
    if weight == 100 and green:
        current = []
    ratios = [(r.id, share / len(green)) for r in green]
    ratios += [(r.id, (1.0 - share) / len(current)) for r in current if share < 1.0]
    return tuple(ratios)


def _differs(routes: Sequence[Route], ratios: tuple[tuple[str, float], ...]) -> bool:
    active = {r.id: r.traffic_ratio for r in routes if r.traffic_status is RouteTrafficStatus.ACTIVE}
    wanted = dict(ratios)
    return active.keys() != wanted.keys() or any(abs(active[i] - wanted[i]) > 1e-9 for i in wanted)


def _where(deployment: Deployment) -> str:
    steps = len(deployment.strategy.canary_spec.steps)
    index = deployment.canary_step_index or 0
    return f"step {index + 1} of {steps}" if index < steps else "final 100 % of a full promotion"


def _canary_failure(deployment: Deployment, routes: Sequence[Route], runs: Runs) -> Decision | None:
    """What comes first in every canary step: a failed background analysis rolls back; failed new routes are
    replaced (the others' shares keep the weight)."""
    background = runs.get(AnalysisRunKind.BACKGROUND)
    if background is not None and background.phase in (AnalysisPhase.FAILED, AnalysisPhase.ERROR):
        return Decision(
            Outcome.GIVE_UP,
            f"background analysis {background.phase} ({background.failed} of "
            f"{background.passed + background.failed} checks failed)",
            error_code="ANALYSIS_FAILED",
        )
    green = of_revision(routes, deployment.deploying_revision_id)
    failed = [r for r in green if r.status in FAILED]
    if not failed:
        return None
    kept = [r for r in routes if r not in failed]
    ratios = canary_ratios(deployment, kept, deployment.canary_weight or 0)
    statuses = ", ".join(sorted({r.status.value for r in failed}))
    return Decision(
        Outcome.NEED_RETRY,
        f"{len(failed)} new route(s) failed ({statuses}); replacing them",
        Actions(terminate=_ids(failed), create_routes=len(failed), create_revision_id=deployment.deploying_revision_id,
                ratios=ratios if _differs(kept, ratios) else ()),
        error_code="ROUTE_FAILED",
    )  # fmt: skip


def _keep_weight(deployment: Deployment, routes: Sequence[Route], message: str, recheck_at: datetime | None,
                 actions: Actions = NO_ACTIONS) -> Decision:  # fmt: skip
    """Wait, putting the shares back to the weight if something (a route that stopped) moved them."""
    ratios = canary_ratios(deployment, routes, deployment.canary_weight or 0)
    if ratios and _differs(routes, ratios):
        actions = Actions(actions.create_routes, actions.create_revision_id, actions.terminate, ratios=ratios,
                          start_analysis=actions.start_analysis)  # fmt: skip
        message += f"; shares reset to {deployment.canary_weight or 0} %"
    return Decision(Outcome.WAIT, message, actions, recheck_at=recheck_at)


def start_canary(
    deployment: Deployment, routes: Sequence[Route], now: datetime, runs: Runs = NO_RUNS, rules: Governance = UNGOVERNED
) -> Decision:
    """A canary starts at its first step. A first deploy has nothing to shift from: `replicas` routes start and take
    all the traffic once all are HEALTHY (READY), within the provisioning timeout."""
    steps = len(deployment.strategy.canary_spec.steps)
    if deployment.current_revision_id is not None:
        return Decision(Outcome.SUCCESS, f"canary starts: {steps} steps", Actions(canary=CanaryMove(0, 0)))
    decision = provision_blue_green(deployment, routes, now, runs)
    if decision.outcome is not Outcome.SUCCESS:
        return decision
    return Decision(
        Outcome.SUCCESS,
        f"first deploy: all {deployment.replicas} routes healthy take 100 % at once, no steps",
        Actions(terminate=decision.actions.terminate, ratios=canary_ratios(deployment, routes, 100),
                canary=CanaryMove(steps, 100)),
    )  # fmt: skip


def progress_canary(
    deployment: Deployment, routes: Sequence[Route], now: datetime, runs: Runs = NO_RUNS, rules: Governance = UNGOVERNED
) -> Decision:
    """The step in progress: a weight once its routes are HEALTHY (all of them in one transaction, with the step's
    move), a timed pause once its seconds passed, an analysis once its run succeeded (a failure rolls back)."""
    failure = _canary_failure(deployment, routes, runs)
    if failure:
        return failure
    index = deployment.canary_step_index or 0
    step = deployment.strategy.canary_spec.step(index)
    weight = deployment.canary_weight or 0
    where = _where(deployment)
    if rules.holds_canary_step(index, len(deployment.strategy.canary_spec.steps)) and rules.freeze is not None:
        return _keep_weight(deployment, routes, f"held at {weight} % ({where}) by {describe_freeze(rules.freeze)}",
                            rules.freeze.ends_at)  # fmt: skip
    if step.set_weight is not None:
        wanted = canary_routes(deployment.replicas, step.set_weight)
        deadline = provisioning_deadline(deployment)
        green = of_revision(routes, deployment.deploying_revision_id)
        healthy = [r for r in green if r.status is RouteStatus.HEALTHY]
        if len(healthy) >= wanted:
            ratios = canary_ratios(deployment, routes, step.set_weight)
            current = sum(1 for i, _ in ratios if i not in {r.id for r in healthy})
            message = (f"weight {weight} % -> {step.set_weight} % ({where}): {min(wanted, len(healthy))} new "
                       f"route(s) share {step.set_weight} %, {current} current route(s) share "
                       f"{100 - step.set_weight} %")  # fmt: skip
            return Decision(
                Outcome.SUCCESS, message, Actions(ratios=ratios, canary=CanaryMove(index + 1, step.set_weight))
            )
        if now >= deadline:
            timeout = deployment.strategy.provisioning_timeout_seconds
            return Decision(Outcome.EXPIRED, f"{len(healthy)} of {wanted} new routes healthy for {step.set_weight} % "
                            f"after the {timeout} s provisioning timeout ({where})",
                            error_code="PROVISIONING_TIMEOUT")  # fmt: skip
        missing = max(0, wanted - len(green))
        message = (
            f"started {missing} new route(s) for {step.set_weight} % ({where})" if missing else "new routes starting"
        )
        actions = Actions(create_routes=missing, create_revision_id=deployment.deploying_revision_id)
        return _keep_weight(deployment, routes, message, deadline, actions)
    if step.pause is not None:
        due = canary_pause_due(deployment)
        if due is not None and now >= due:
            return Decision(Outcome.SUCCESS, f"pause of {step.pause.seconds} s at {weight} % ended ({where})",
                            Actions(canary=CanaryMove(index + 1, weight)))  # fmt: skip
        return _keep_weight(deployment, routes, f"paused at {weight} % ({where})", due)
    run = runs.get(AnalysisRunKind.CANARY_STEP)
    if run is None or run.revision_id != deployment.deploying_revision_id:
        return _keep_weight(deployment, routes, f"canary step analysis starts ({where})", None,
                            Actions(start_analysis=AnalysisRunKind.CANARY_STEP))  # fmt: skip
    if run.phase in (AnalysisPhase.FAILED, AnalysisPhase.ERROR):
        return Decision(Outcome.GIVE_UP, f"canary step analysis {run.phase} at {weight} % ({run.failed} of "
                        f"{run.passed + run.failed} checks failed; {where})", error_code="ANALYSIS_FAILED")  # fmt: skip
    if run.phase is AnalysisPhase.SUCCESSFUL:
        return Decision(Outcome.SUCCESS, f"canary step analysis SUCCESSFUL at {weight} % ({where})",
                        Actions(canary=CanaryMove(index + 1, weight)))  # fmt: skip
    return _keep_weight(deployment, routes, f"analysis running at {weight} % ({where})", None)  # its end wakes it


def canary_pause(
    deployment: Deployment, routes: Sequence[Route], now: datetime, runs: Runs = NO_RUNS, rules: Governance = UNGOVERNED
) -> Decision:
    """A pause without seconds: only `promoteDeployment` ends it (store/canary.py); meanwhile the weight holds,
    failed new routes are replaced and a failed background analysis rolls back."""
    failure = _canary_failure(deployment, routes, runs)
    if failure:
        return failure
    weight = deployment.canary_weight or 0
    return _keep_weight(deployment, routes, f"paused at {weight} % until promoteDeployment ({_where(deployment)})",
                        None)  # fmt: skip
