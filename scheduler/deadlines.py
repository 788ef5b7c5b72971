"""When the scheduler acts on a deployment by itself: one function per deadline.

The handlers act on these times, `waitingFor` reports them and `nextActionAt` shows them, so the three cannot
disagree. Every deadline counts from `phase_started_at`, the database's time of the last change of state.
"""

from collections.abc import Sequence
from datetime import datetime, timedelta

from store.models import (
    Deployment,
    DeploymentLifecycle,
    DeploymentLifecycleSubStep,
    DeploymentStrategyType,
    Route,
    RouteStatus,
)


def _after_phase_start(deployment: Deployment, seconds: int) -> datetime:
    return deployment.phase_started_at + timedelta(seconds=seconds)


def provisioning_deadline(deployment: Deployment) -> datetime:
    """Provisioning (and a rolling rollback) that has not converged by then expires."""
    return _after_phase_start(deployment, deployment.strategy.provisioning_timeout_seconds)


def promotion_deadline(deployment: Deployment) -> datetime | None:
    """A blue-green deployment still awaiting promotion then is rolled back; None waits for a person forever."""
    timeout = deployment.strategy.blue_green_spec.promotion_timeout_seconds
    return None if timeout is None else _after_phase_start(deployment, timeout)


def auto_promotion_due(deployment: Deployment) -> datetime | None:
    """From then on an auto-promoting deployment is promoted (once all green routes are healthy)."""
    spec = deployment.strategy.blue_green_spec
    return _after_phase_start(deployment, spec.promote_delay_seconds) if spec.auto_promote else None


def canary_pause_due(deployment: Deployment) -> datetime | None:
    """A canary step that pauses for some seconds is done then (the step started when the phase did)."""
    if deployment.sub_step is not DeploymentLifecycleSubStep.DEPLOYING_PROGRESSING:
        return None
    pause = deployment.strategy.canary_spec.step(deployment.canary_step_index or 0).pause
    return None if pause is None or pause.seconds is None else _after_phase_start(deployment, pause.seconds)


def canary_next_action(deployment: Deployment) -> datetime | None:
    """A canary acts at once when it starts (a first deploy provisions), when its pause ends, and gives a step's
    routes until the provisioning timeout; an analysis step and a pause for a person wait for events."""
    S = DeploymentLifecycleSubStep
    if deployment.sub_step is S.DEPLOYING_PROVISIONING:
        return deployment.phase_started_at if deployment.current_revision_id else provisioning_deadline(deployment)
    if deployment.sub_step is not S.DEPLOYING_PROGRESSING:
        return None
    step = deployment.strategy.canary_spec.step(deployment.canary_step_index or 0)
    if step.set_weight is not None:
        return provisioning_deadline(deployment)
    return canary_pause_due(deployment)


def scale_downs(routes: Sequence[Route], now: datetime) -> tuple[list[Route], datetime | None]:
    """Old routes kept warm after a promotion whose scale-down time (set by the promotion) has passed, and when the
    next one comes."""
    kept = [r for r in routes if r.status is not RouteStatus.TERMINATING and r.terminate_after is not None]
    due = [r for r in kept if r.terminate_after is not None and r.terminate_after <= now]
    later = [r.terminate_after for r in kept if r.terminate_after is not None and r.terminate_after > now]
    return due, min(later, default=None)


def next_action_at(deployment: Deployment) -> datetime | None:
    """`nextActionAt`: the first of the deadlines above that applies to the deployment's state; None while only an
    event (a health report, a person) can move it."""
    L, S = DeploymentLifecycle, DeploymentLifecycleSubStep
    if deployment.lifecycle is L.READY:
        return deployment.next_check_at  # the scale-down of the routes kept warm, scheduled by the promotion
    if deployment.lifecycle is L.DESTROYING or deployment.sub_step is S.DEPLOYING_ROLLING_BACK:
        return deployment.phase_started_at  # at once
    if deployment.strategy.type is DeploymentStrategyType.CANARY:
        return canary_next_action(deployment)
    if deployment.sub_step is S.DEPLOYING_PROVISIONING:
        return provisioning_deadline(deployment)
    if deployment.sub_step is S.DEPLOYING_AWAITING_PROMOTION:
        return min(
            (t for t in (promotion_deadline(deployment), auto_promotion_due(deployment)) if t is not None),
            default=None,
        )
    return None
