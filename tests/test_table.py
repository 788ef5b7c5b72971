"""The transition table as data: every state is handled, and every outcome leads to a known state."""

import itertools
import uuid
from datetime import UTC, datetime

import pytest

from scheduler.decisions import Outcome
from scheduler.table import IDLE, TRANSITIONS, Target, transition_for
from store.models import (
    Deployment,
    DeploymentLifecycle,
    DeploymentLifecycleSubStep,
    DeploymentStrategyType,
    Strategy,
)

L, S = DeploymentLifecycle, DeploymentLifecycleSubStep
# Every (lifecycle, subStep) the database allows (see the CHECK constraints).
ALL_STATES = [(lc, None) for lc in L if lc is not L.DEPLOYING] + [(L.DEPLOYING, sub) for sub in S]


def deployment(lifecycle: L, sub_step: S | None, strategy: DeploymentStrategyType, current: bool) -> Deployment:
    now = datetime.now(UTC)
    return Deployment(
        id=str(uuid.uuid4()),
        seq=1,
        project_id=str(uuid.uuid4()),
        name="d",
        replicas=1,
        lifecycle=lifecycle,
        sub_step=sub_step,
        strategy=Strategy(type=strategy),
        current_revision_id=str(uuid.uuid4()) if current else None,
        deploying_revision_id=str(uuid.uuid4()) if lifecycle is L.DEPLOYING else None,
        attempts=0,
        phase_started_at=now,
        next_check_at=None,
        created_at=now,
        updated_at=now,
    )


CASES = [
    (state, strategy, current)
    for state, strategy, current in itertools.product(ALL_STATES, DeploymentStrategyType, (True, False))
    if not (state[0] is L.READY and not current) and not (state[0] is L.PENDING and current)
    if not (state[1] is S.DEPLOYING_AWAITING_PROMOTION and strategy is DeploymentStrategyType.ROLLING)
    if not (state[1] is S.DEPLOYING_PROGRESSING and strategy is not DeploymentStrategyType.CANARY)
]


@pytest.mark.parametrize(("state", "strategy", "current"), CASES)
def test_every_state_has_a_handler_or_waits_for_a_user(
    state: tuple[L, S | None], strategy: DeploymentStrategyType, current: bool
) -> None:
    d = deployment(*state, strategy, current)
    transition = transition_for(d)
    if transition is None:
        assert state in IDLE
        return
    for outcome in (Outcome.SUCCESS, Outcome.EXPIRED, Outcome.GIVE_UP):
        target: Target = transition.target(outcome)
        resolved = target.resolve(d)
        assert resolved is None or resolved in ALL_STATES
        assert resolved is None or resolved in IDLE or transition_for(deployment(*resolved, strategy, True))


def test_no_failure_outcome_of_a_rollout_leaves_deploying_except_through_rolling_back() -> None:
    for (lifecycle, sub_step, _), transition in TRANSITIONS.items():
        if lifecycle is L.DEPLOYING and sub_step is not S.DEPLOYING_ROLLING_BACK:
            for outcome in (Outcome.EXPIRED, Outcome.GIVE_UP):
                assert transition.target(outcome).state == (L.DEPLOYING, S.DEPLOYING_ROLLING_BACK)


def test_the_idle_states_are_the_ones_without_a_handler() -> None:
    handled = {(lc, sub) for lc, sub, _ in TRANSITIONS}
    assert handled.isdisjoint(IDLE)
    assert handled | IDLE == set(ALL_STATES)
