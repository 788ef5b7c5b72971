"""Why a deployment in flight has not moved on: a pure function of (deployment, routes, now), like the handlers."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from scheduler.deadlines import auto_promotion_due, canary_pause_due, promotion_deadline, provisioning_deadline
from scheduler.handlers import NO_RUNS, Runs, of_revision
from store.analysis import WORDS
from store.governance import describe_approvals, describe_freeze
from store.models import (
    UNGOVERNED,
    AnalysisPhase,
    AnalysisRun,
    AnalysisRunKind,
    Deployment,
    DeploymentLifecycle,
    DeploymentLifecycleSubStep,
    DeploymentStrategyType,
    Governance,
    Route,
    canary_routes,
)
from store.models import RouteStatus as S

S_SUB = DeploymentLifecycleSubStep


@dataclass(frozen=True)
class WaitingFor:
    reason: str
    message: str


def _at(t: datetime) -> str:
    return t.isoformat(timespec="seconds")


def _unhealthy(routes: Sequence[Route]) -> str:
    worst = [r for r in routes if r.status in (S.UNHEALTHY, S.FAILED_TO_START, S.DEGRADED)]
    return "".join(f"; route {r.id} {r.status} since {_at(r.updated_at)}" for r in worst[:3])


def _analysis(run: AnalysisRun) -> WaitingFor:
    when = f"; next check at {_at(run.next_check_at)}" if run.next_check_at else ""
    return WaitingFor("ANALYSIS", f"{WORDS[run.kind]} running: {run.passed + run.failed} of {run.spec.count} checks "
                      f"taken, {run.failed} failed (at most {run.spec.failure_limit}){when}")  # fmt: skip


def _governance(rules: Governance, after: str) -> WaitingFor | None:
    """What holds a promotion that is otherwise possible (SPEC §8): approvals first (they can be given during a
    freeze), then a freeze window in force. `after` ends the sentence."""
    if rules.hold == "APPROVALS":
        return WaitingFor("APPROVALS", f"{describe_approvals(rules)} of the revision being deployed; promotion waits "
                          f"for {rules.missing_approvals} more (approvePromotion){after}")  # fmt: skip
    if rules.hold == "FREEZE_WINDOW" and rules.freeze is not None:
        return WaitingFor("FREEZE_WINDOW", f"{describe_freeze(rules.freeze)}: promotion waits until it ends, unless "
                          f"an admin breaks the glass{after}")  # fmt: skip
    return None


def _canary(deployment: Deployment, routes: Sequence[Route], runs: Runs, rules: Governance) -> WaitingFor:
    """A canary between its steps: what the step in progress waits for."""
    spec = deployment.strategy.canary_spec
    index, weight = deployment.canary_step_index or 0, deployment.canary_weight or 0
    where = f"step {index + 1} of {len(spec.steps)}" if index < len(spec.steps) else "final 100 % of a full promotion"
    step = spec.step(index)
    if deployment.sub_step is S_SUB.DEPLOYING_AWAITING_PROMOTION:
        held = _governance(rules, f"; paused at {weight} % ({where})")
        return held or WaitingFor("CANARY_PAUSE", f"paused at {weight} % ({where}) until promoteDeployment")
    if rules.holds_canary_step(index, len(spec.steps)) and rules.freeze is not None:
        return WaitingFor("FREEZE_WINDOW", f"held at {weight} % ({where}) by {describe_freeze(rules.freeze)}")
    if step.set_weight is not None:
        new = of_revision(routes, deployment.deploying_revision_id)
        healthy = sum(r.status is S.HEALTHY for r in new)
        wanted = canary_routes(deployment.replicas, step.set_weight)
        return WaitingFor("ROUTES_NOT_HEALTHY", f"{healthy} of {wanted} new routes healthy for {step.set_weight} % "
                          f"({where}){_unhealthy(new)}; rolls back at {_at(provisioning_deadline(deployment))} "
                          "unless they are")  # fmt: skip
    due = canary_pause_due(deployment)
    if due is not None:
        return WaitingFor("CANARY_PAUSE", f"paused at {weight} % ({where}) until {_at(due)}")
    run = runs.get(AnalysisRunKind.CANARY_STEP)
    if run is not None and run.phase is AnalysisPhase.RUNNING:
        return _analysis(run)
    return WaitingFor("ANALYSIS", f"canary step analysis at {weight} % ({where}) starts on the scheduler's next pass")


def waiting_for(
    deployment: Deployment, routes: Sequence[Route], now: datetime, runs: Runs = NO_RUNS, rules: Governance = UNGOVERNED
) -> WaitingFor | None:
    running = [r for r in runs.values() if r.phase is AnalysisPhase.RUNNING]
    if deployment.lifecycle is DeploymentLifecycle.READY:
        # A post-promotion analysis holds the old routes warm: the one thing a READY deployment waits for.
        return _analysis(running[0]) if running else None
    if deployment.lifecycle is not DeploymentLifecycle.DEPLOYING:
        return None
    new = of_revision(routes, deployment.deploying_revision_id)
    healthy = sum(r.status is S.HEALTHY for r in new)
    replicas = deployment.replicas
    if deployment.sub_step is S_SUB.DEPLOYING_ROLLING_BACK:
        return WaitingFor("ROLLING_BACK", f"rolling back since {_at(deployment.phase_started_at)}: stopping "
                          f"{len(new)} route(s) of the abandoned revision")  # fmt: skip
    canary = deployment.strategy.type is DeploymentStrategyType.CANARY
    if canary and deployment.sub_step is not S_SUB.DEPLOYING_PROVISIONING:
        return _canary(deployment, routes, runs, rules)
    if canary and deployment.current_revision_id is not None:
        return WaitingFor("CANARY_STARTING", "the canary starts its first step on the scheduler's next pass")
    if deployment.sub_step is S_SUB.DEPLOYING_PROVISIONING:
        deadline = provisioning_deadline(deployment)
        if deployment.strategy.type is DeploymentStrategyType.ROLLING:
            old = [
                r for r in routes if r.revision_id != deployment.deploying_revision_id and r.status is not S.TERMINATING
            ]
            return WaitingFor("ROLLING", f"{healthy} of {replicas} new routes healthy, {len(old)} old route(s) left"
                              f"{_unhealthy(new)}; rolls back at {_at(deadline)}")  # fmt: skip
        return WaitingFor("ROUTES_NOT_HEALTHY", f"{healthy} of {replicas} green routes healthy{_unhealthy(new)}; "
                          f"rolls back at {_at(deadline)} unless all are")  # fmt: skip
    timeout_at = promotion_deadline(deployment)
    timeout = "never times out" if timeout_at is None else f"times out at {_at(timeout_at)}"
    if healthy < replicas:
        return WaitingFor("ROUTES_NOT_HEALTHY", f"{healthy} of {replicas} green routes healthy{_unhealthy(new)}; "
                          f"promotion needs all of them; {timeout}")  # fmt: skip
    if running:
        return _analysis(running[0])
    held = _governance(rules, f"; {timeout}")
    if held is not None:
        return held
    promote_at = auto_promotion_due(deployment)
    if promote_at is not None:
        if now < promote_at:
            return WaitingFor("AUTO_PROMOTION_DELAY", f"all {replicas} green routes healthy; auto-promotes at "
                              f"{_at(promote_at)}; {timeout}")  # fmt: skip
        return WaitingFor("AUTO_PROMOTION_DUE", "auto-promotion is due; the scheduler promotes on its next pass")
    return WaitingFor("MANUAL_PROMOTION", f"waiting for manual promotion since {_at(deployment.phase_started_at)}; "
                      f"{timeout}")  # fmt: skip
