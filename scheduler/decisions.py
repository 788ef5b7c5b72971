"""What a handler decides about one deployment: an outcome, a reason, and the route changes it needs."""

import enum
from dataclasses import dataclass, field
from datetime import datetime

from store.models import AnalysisRunKind, SchedulingResult


class Outcome(enum.Enum):
    """A handler's verdict; its value is the result history records (waiting records none)."""

    WAIT = None  # nothing to move yet; not a failure, spends no retry
    SUCCESS = SchedulingResult.SUCCESS
    NEED_RETRY = SchedulingResult.NEED_RETRY
    EXPIRED = SchedulingResult.EXPIRED
    GIVE_UP = SchedulingResult.GIVE_UP


@dataclass(frozen=True)
class CanaryMove:
    """Where a canary rollout stands once the step in progress is done: the next step and the weight."""

    step_index: int
    weight: int


@dataclass(frozen=True)
class Actions:
    create_routes: int = 0  # new PROVISIONING routes of `create_revision_id`
    create_revision_id: str | None = None
    terminate: tuple[str, ...] = ()  # route ids to stop
    traffic: tuple[str, ...] = ()  # route ids that share the traffic equally afterwards
    promote: bool = False  # the blue-green switch (store.rollouts.promote_locked, as promoteDeployment makes it)
    start_analysis: AnalysisRunKind | None = None  # a run of the deployment's spec of that kind (its own history)
    revert: bool = False  # back to the previous revision, kept warm (store.rollouts.revert_traffic; its own history)
    # A failed post-promotion analysis with nothing left to revert to: said once in history, then the epoch moves on.
    cannot_revert: bool = False
    # Canary: each route's own share of the traffic afterwards (all others none); the shares add up to 1.
    ratios: tuple[tuple[str, float], ...] = ()
    canary: CanaryMove | None = None  # with SUCCESS: the next step (store.canary.enter_step, the table's target)

    def __bool__(self) -> bool:
        """Whether routes change (the step's history row says how)."""
        return bool(self.create_routes or self.terminate or self.traffic or self.ratios or self.promote)


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    message: str
    actions: Actions = field(default_factory=Actions)
    # When to look again while waiting; None waits for an event (a health report, a user's operation).
    recheck_at: datetime | None = None
    error_code: str | None = None
