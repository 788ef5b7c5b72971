"""The lifecycle as data: for each state, the handler that runs and where each of its outcomes leads.

A state is (lifecycle, subStep); a strategy-specific row wins over the generic one (strategy None).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from scheduler import handlers
from scheduler.decisions import Decision, Outcome
from store.canary import PHASE as CANARY
from store.models import (
    Deployment,
    DeploymentLifecycle,
    DeploymentLifecycleSubStep,
    DeploymentStrategyType,
    Governance,
    Route,
)
from store.rollouts import PROMOTE, PROMOTED

Handler = Callable[[Deployment, Sequence[Route], datetime, handlers.Runs, Governance], Decision]
State = tuple[DeploymentLifecycle, DeploymentLifecycleSubStep | None]


@dataclass(frozen=True)
class Target:
    state: State | None  # None: stay in the current state
    swap: bool = False  # the deploying revision becomes the current one
    traffic_back: bool = False  # a canary: all traffic back on the current revision in the same transaction

    def resolve(self, deployment: Deployment) -> State | None:
        return self.state


@dataclass(frozen=True)
class CanaryNext(Target):
    """Where a canary goes once the step in progress is done (store.models.CanarySpec.state_after): the next step's
    state, or READY with the revision swapped after the last one. A canary that starts goes to its first step, or,
    a first deploy (nothing to shift from), straight to READY."""

    def resolve(self, deployment: Deployment) -> State:
        spec = deployment.strategy.canary_spec
        if deployment.sub_step is DeploymentLifecycleSubStep.DEPLOYING_PROVISIONING:
            if deployment.current_revision_id is None:
                return (DeploymentLifecycle.READY, None)
            return spec.state_at(0)
        return spec.state_after(deployment.canary_step_index or 0)


@dataclass(frozen=True)
class Restore(Target):
    """Back to READY when a revision still serves, else PENDING (a failed first deploy)."""

    def resolve(self, deployment: Deployment) -> State:
        if deployment.current_revision_id is not None:
            return (DeploymentLifecycle.READY, None)
        return (DeploymentLifecycle.PENDING, None)


@dataclass(frozen=True)
class Transition:
    handler: Handler
    phase: str  # names the step in history
    success: Target
    expired: Target
    give_up: Target
    # NEED_RETRY always stays, with attempts + 1, until maxRetries is spent; then it counts as GIVE_UP.

    def target(self, outcome: Outcome) -> Target:
        return {Outcome.SUCCESS: self.success, Outcome.EXPIRED: self.expired, Outcome.GIVE_UP: self.give_up}[outcome]


L, S = DeploymentLifecycle, DeploymentLifecycleSubStep
STAY = Target(None)
ROLL_BACK = Target((L.DEPLOYING, S.DEPLOYING_ROLLING_BACK))
RESTORE = Restore(None)
CANARY_NEXT = CanaryNext(None)
CANARY_ROLL_BACK = Target((L.DEPLOYING, S.DEPLOYING_ROLLING_BACK), traffic_back=True)

TRANSITIONS: dict[tuple[L, S | None, DeploymentStrategyType | None], Transition] = {
    (L.DEPLOYING, S.DEPLOYING_PROVISIONING, DeploymentStrategyType.BLUE_GREEN): Transition(
        handlers.provision_blue_green, "provision",
        success=Target((L.DEPLOYING, S.DEPLOYING_AWAITING_PROMOTION)), expired=ROLL_BACK, give_up=ROLL_BACK,
    ),
    (L.DEPLOYING, S.DEPLOYING_PROVISIONING, DeploymentStrategyType.ROLLING): Transition(
        handlers.provision_rolling, "roll",
        success=Target((L.READY, None), swap=True), expired=ROLL_BACK, give_up=ROLL_BACK,
    ),
    (L.DEPLOYING, S.DEPLOYING_PROVISIONING, DeploymentStrategyType.CANARY): Transition(
        handlers.start_canary, CANARY,
        success=CANARY_NEXT, expired=CANARY_ROLL_BACK, give_up=CANARY_ROLL_BACK,
    ),
    (L.DEPLOYING, S.DEPLOYING_PROGRESSING, DeploymentStrategyType.CANARY): Transition(
        handlers.progress_canary, CANARY,
        success=CANARY_NEXT, expired=CANARY_ROLL_BACK, give_up=CANARY_ROLL_BACK,
    ),
    (L.DEPLOYING, S.DEPLOYING_AWAITING_PROMOTION, DeploymentStrategyType.CANARY): Transition(
        handlers.canary_pause, CANARY,
        success=CANARY_NEXT, expired=CANARY_ROLL_BACK, give_up=CANARY_ROLL_BACK,
    ),
    (L.DEPLOYING, S.DEPLOYING_AWAITING_PROMOTION, None): Transition(
        handlers.await_promotion, PROMOTE,
        success=Target(PROMOTED, swap=True), expired=ROLL_BACK, give_up=ROLL_BACK,
    ),
    # A rollback and a destroy never give up: they retry with backoff until they succeed.
    (L.DEPLOYING, S.DEPLOYING_ROLLING_BACK, None): Transition(
        handlers.roll_back, "rollback", success=RESTORE, expired=RESTORE, give_up=STAY,
    ),
    (L.READY, None, None): Transition(handlers.reconcile, "reconcile", success=STAY, expired=STAY, give_up=STAY),
    (L.DESTROYING, None, None): Transition(
        handlers.destroy, "destroy",
        success=Target((L.DESTROYED, None)), expired=Target((L.DESTROYED, None)), give_up=STAY,
    ),
}  # fmt: skip

# States that wait for a user only: nothing for the scheduler to do.
IDLE: frozenset[State] = frozenset({(L.PENDING, None), (L.DESTROYED, None)})


def transition_for(deployment: Deployment) -> Transition | None:
    return TRANSITIONS.get(
        (deployment.lifecycle, deployment.sub_step, deployment.strategy.type),
        TRANSITIONS.get((deployment.lifecycle, deployment.sub_step, None)),
    )
