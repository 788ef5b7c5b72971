"""What a handler decides about one deployment: an outcome, a reason, and the route changes it needs."""

import enum
from dataclasses import dataclass, field
from datetime import datetime

from store.models import SchedulingResult


class Outcome(enum.Enum):
    """A handler's verdict; its value is the result history records (waiting records none)."""

    WAIT = None  # nothing to move yet; not a failure, spends no retry
    SUCCESS = SchedulingResult.SUCCESS
    NEED_RETRY = SchedulingResult.NEED_RETRY
    EXPIRED = SchedulingResult.EXPIRED
    GIVE_UP = SchedulingResult.GIVE_UP


@dataclass(frozen=True)
class Actions:
    create_routes: int = 0  # new PROVISIONING routes of `create_revision_id`
    create_revision_id: str | None = None
    terminate: tuple[str, ...] = ()  # route ids to stop
    traffic: tuple[str, ...] = ()  # route ids that share the traffic equally afterwards
    promote: bool = False  # the blue-green switch (store.rollouts.switch_traffic, as promoteDeployment makes it)

    def __bool__(self) -> bool:
        return bool(self.create_routes or self.terminate or self.traffic or self.promote)


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    message: str
    actions: Actions = field(default_factory=Actions)
    # When to look again while waiting; None waits for an event (a health report, a user's operation).
    recheck_at: datetime | None = None
    error_code: str | None = None
