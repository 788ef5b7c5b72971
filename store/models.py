"""Domain records as the store returns them. Enum names match the GraphQL enums exactly."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class DeploymentLifecycle(enum.StrEnum):
    PENDING = "PENDING"
    READY = "READY"
    DEPLOYING = "DEPLOYING"
    DESTROYING = "DESTROYING"
    DESTROYED = "DESTROYED"


class DeploymentLifecycleSubStep(enum.StrEnum):
    DEPLOYING_PROVISIONING = "DEPLOYING_PROVISIONING"
    DEPLOYING_PROGRESSING = "DEPLOYING_PROGRESSING"
    DEPLOYING_AWAITING_PROMOTION = "DEPLOYING_AWAITING_PROMOTION"
    DEPLOYING_ROLLING_BACK = "DEPLOYING_ROLLING_BACK"


class RouteStatus(enum.StrEnum):
    PROVISIONING = "PROVISIONING"
    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"
    DEGRADED = "DEGRADED"
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"
    FAILED_TO_START = "FAILED_TO_START"


class RouteTrafficStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"


class DeploymentStrategyType(enum.StrEnum):
    ROLLING = "ROLLING"
    BLUE_GREEN = "BLUE_GREEN"
    CANARY = "CANARY"


class SchedulingResult(enum.StrEnum):
    SUCCESS = "SUCCESS"
    NEED_RETRY = "NEED_RETRY"
    EXPIRED = "EXPIRED"
    GIVE_UP = "GIVE_UP"
    SKIPPED = "SKIPPED"


@dataclass(frozen=True)
class IntOrPercent:
    count: int | None = None
    percent: float | None = None

    def resolve(self, replicas: int, *, round_up: bool) -> int:
        """Routes this value stands for out of `replicas` (Kubernetes rounding: surge up, unavailable down)."""
        if self.count is not None:
            return self.count
        assert self.percent is not None
        exact = self.percent * replicas
        # Guard against float noise such as 0.3 * 10 = 3.0000000000000004.
        nearest = round(exact)
        if math.isclose(exact, nearest, abs_tol=1e-9):
            return nearest
        return math.ceil(exact) if round_up else math.floor(exact)


class MetricProvider(enum.StrEnum):
    BUILTIN = "BUILTIN"
    PROMETHEUS = "PROMETHEUS"
    WEB = "WEB"


# What the BUILTIN provider measures (from every `switchover proxy`'s figures).
BUILTIN_METRICS = frozenset({"request-success-rate", "request-duration-p99", "shadow-agreement-rate"})


class AnalysisRunKind(enum.StrEnum):
    PRE_PROMOTION = "PRE_PROMOTION"
    POST_PROMOTION = "POST_PROMOTION"
    CANARY_STEP = "CANARY_STEP"
    BACKGROUND = "BACKGROUND"


class AnalysisPhase(enum.StrEnum):
    RUNNING = "RUNNING"
    SUCCESSFUL = "SUCCESSFUL"
    FAILED = "FAILED"
    ERROR = "ERROR"


@dataclass(frozen=True)
class MetricCheck:
    """One metric of an analysis: it passes when `min <= value <= max` (a bound left out does not apply)."""

    name: str
    provider: MetricProvider
    query: str | None = None
    url: str | None = None
    json_path: str | None = None
    min: float | None = None
    max: float | None = None
    # BUILTIN only: fewer requests than this in a check's interval is not enough data, a check without a number.
    min_requests: int | None = None


@dataclass(frozen=True)
class AnalysisSpec:
    """`count` checks, one every `interval_seconds` after `initial_delay_seconds`; more than `failure_limit` failed
    checks fail the run."""

    metrics: tuple[MetricCheck, ...]
    interval_seconds: int = 10
    count: int = 3
    failure_limit: int = 0
    initial_delay_seconds: int = 0


class ShadowCompare(enum.StrEnum):
    EXACT = "EXACT"
    JSON = "JSON"


@dataclass(frozen=True)
class ShadowSpec:
    """Shadow traffic (SPEC §6): `percent` of the requests blue answers are also sent to a healthy green route, and
    the two answers compared; `ignore_fields` are JSONPath expressions removed from both JSON answers first."""

    percent: int = 100
    compare: ShadowCompare = ShadowCompare.JSON
    tolerance: float = 0.0
    ignore_fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class BlueGreenSpec:
    auto_promote: bool = False
    promote_delay_seconds: int = 0
    promotion_timeout_seconds: int | None = None
    scale_down_delay_seconds: int = 30
    pre_promotion_analysis: AnalysisSpec | None = None
    post_promotion_analysis: AnalysisSpec | None = None
    shadow: ShadowSpec | None = None
    required_approvals: int = 0  # distinct approvers of the rollout before promotion (SPEC §8)


@dataclass(frozen=True)
class RollingUpdateSpec:
    max_surge: IntOrPercent = field(default_factory=lambda: IntOrPercent(percent=0.5))
    max_unavailable: IntOrPercent = field(default_factory=lambda: IntOrPercent(percent=0.0))


@dataclass(frozen=True)
class Pause:
    """A canary pause: `seconds`, or (None) until `promoteDeployment`."""

    seconds: int | None = None


@dataclass(frozen=True)
class CanaryStep:
    """One canary step; validation makes sure exactly one field is set."""

    set_weight: int | None = None
    pause: Pause | None = None
    analysis: AnalysisSpec | None = None


# The step a full promotion (or a first deploy) goes through: everything on the deploying revision.
FULL_WEIGHT = CanaryStep(set_weight=100)


@dataclass(frozen=True)
class CanarySpec:
    steps: tuple[CanaryStep, ...] = ()
    analysis: AnalysisSpec | None = None  # BACKGROUND: from the first step until the rollout ends
    scale_down_delay_seconds: int = 30
    required_approvals: int = 0  # gates the pauses without seconds (SPEC §8)

    def step(self, index: int) -> CanaryStep:
        """The step at `index`; past the last one, the final 100 % (where a full promotion jumps)."""
        return self.steps[index] if index < len(self.steps) else FULL_WEIGHT

    def state_at(self, index: int) -> tuple[DeploymentLifecycle, DeploymentLifecycleSubStep | None]:
        """The state of a canary rollout while step `index` is in progress: a pause without seconds waits for a
        person, every other step progresses."""
        pause = self.step(index).pause
        if pause is not None and pause.seconds is None:
            return DeploymentLifecycle.DEPLOYING, DeploymentLifecycleSubStep.DEPLOYING_AWAITING_PROMOTION
        return DeploymentLifecycle.DEPLOYING, DeploymentLifecycleSubStep.DEPLOYING_PROGRESSING

    def state_after(self, index: int) -> tuple[DeploymentLifecycle, DeploymentLifecycleSubStep | None]:
        """The state once step `index` is done: the next step's, or READY (the revision swapped) after the last one
        (whose weight is 100) and after the final 100 % of a full promotion."""
        if index + 1 >= len(self.steps):
            return DeploymentLifecycle.READY, None
        return self.state_at(index + 1)


def canary_routes(replicas: int, weight: int) -> int:
    """Routes of the deploying revision at `weight` percent: max(1, ceil(replicas · weight / 100))."""
    return max(1, -(-replicas * weight // 100))


@dataclass(frozen=True)
class Strategy:
    """A deployment's strategy. Both specs are kept so that switching type keeps the other's settings."""

    type: DeploymentStrategyType
    blue_green_spec: BlueGreenSpec = field(default_factory=BlueGreenSpec)
    rolling_update_spec: RollingUpdateSpec = field(default_factory=RollingUpdateSpec)
    canary_spec: CanarySpec = field(default_factory=CanarySpec)
    provisioning_timeout_seconds: int = 600
    max_retries: int = 5

    @property
    def blue_green(self) -> BlueGreenSpec | None:
        return self.blue_green_spec if self.type is DeploymentStrategyType.BLUE_GREEN else None

    @property
    def rolling_update(self) -> RollingUpdateSpec | None:
        return self.rolling_update_spec if self.type is DeploymentStrategyType.ROLLING else None

    @property
    def canary(self) -> CanarySpec | None:
        return self.canary_spec if self.type is DeploymentStrategyType.CANARY else None


# Records are plain (not frozen) dataclasses: Ariadne's federation support tags entities with their type name.


@dataclass
class Deployment:
    id: str
    seq: int
    project_id: str
    name: str
    replicas: int
    lifecycle: DeploymentLifecycle
    sub_step: DeploymentLifecycleSubStep | None
    strategy: Strategy
    current_revision_id: str | None
    deploying_revision_id: str | None
    attempts: int
    phase_started_at: datetime
    next_check_at: datetime | None
    created_at: datetime
    updated_at: datetime
    # A canary rollout: the index of the step in progress and the deploying revision's percent of the traffic.
    canary_step_index: int | None = None
    canary_weight: int | None = None


@dataclass
class Revision:
    id: str
    deployment_id: str
    number: int
    image: str
    env: dict[str, Any]
    health_check_path: str
    created_at: datetime


@dataclass
class Route:
    id: str
    seq: int
    deployment_id: str
    revision_id: str
    status: RouteStatus
    traffic_status: RouteTrafficStatus
    traffic_ratio: float
    endpoint_url: str | None
    runtime_ref: str | None
    terminate_after: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass
class AnalysisRun:
    id: str
    seq: int
    deployment_id: str
    revision_id: str
    kind: AnalysisRunKind
    phase: AnalysisPhase
    spec: AnalysisSpec
    passed: int
    failed: int
    errors: int
    next_check_at: datetime | None
    started_at: datetime
    finished_at: datetime | None
    updated_at: datetime


@dataclass
class Measurement:
    id: str
    seq: int
    run_id: str
    metric: str
    value: float | None
    passed: bool | None  # None: the provider gave no number
    message: str
    at: datetime


@dataclass
class HistoryEntry:
    id: str
    seq: int
    deployment_id: str
    phase: str
    from_lifecycle: DeploymentLifecycle | None
    to_lifecycle: DeploymentLifecycle | None
    from_sub_step: DeploymentLifecycleSubStep | None
    to_sub_step: DeploymentLifecycleSubStep | None
    result: SchedulingResult
    message: str
    error_code: str | None
    attempts: int
    actor: str
    created_at: datetime
    updated_at: datetime


LIVE_ROUTE_STATUSES = frozenset(
    {RouteStatus.PROVISIONING, RouteStatus.HEALTHY, RouteStatus.UNHEALTHY, RouteStatus.DEGRADED}
)


@dataclass(frozen=True)
class ShadowSample:
    """A disagreement the proxy kept: strings truncated to 4 KiB, the request without its headers."""

    request: str
    blue_answer: str
    green_answer: str


@dataclass(frozen=True)
class ShadowStats:
    """Mirrored requests of the revision being deployed: each ended as one of agreed, disagreed, green_errors."""

    agreed: int
    disagreed: int
    green_errors: int
    samples: list[ShadowSample]

    @property
    def requests(self) -> int:
        return self.agreed + self.disagreed + self.green_errors


@dataclass(frozen=True)
class CanaryStatus:
    step_index: int
    weight: int


@dataclass
class Promotion:
    """What a promotion did (or, on a dry run, would do)."""

    deployment: Deployment
    promoted_routes: list[Route]
    drained_routes: list[Route]
    dry_run: bool


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a Relay connection: items with their cursors, and whether more follow."""

    items: list[tuple[str, T]]
    has_next_page: bool


# --- governance (SPEC §8) -----------------------------------------------------------------------------------------


@dataclass
class Approval:
    """One person's approval of one revision in one rollout of a deployment."""

    id: str
    seq: int
    deployment_id: str
    revision_id: str
    approver: str
    comment: str | None
    created_at: datetime


@dataclass
class FreezeWindow:
    """A time range in which a project's deploys and promotions are refused and auto-promotion waits."""

    id: str
    seq: int
    project_id: str
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str
    created_at: datetime


@dataclass(frozen=True)
class Governance:
    """What holds a promotion besides the routes and analyses: the approvals the rollout in flight has (and needs),
    and the freeze window in force in its project, if any."""

    required: int = 0
    approvers: tuple[str, ...] = ()
    freeze: FreezeWindow | None = None

    @property
    def missing_approvals(self) -> int:
        return max(0, self.required - len(self.approvers))

    @property
    def hold(self) -> str | None:
        """What holds a promotion that is otherwise possible (a WaitingFor reason): approvals first (they can be
        given during a freeze), then a freeze window in force; None when nothing does."""
        if self.missing_approvals:
            return "APPROVALS"
        if self.freeze is not None:
            return "FREEZE_WINDOW"
        return None

    def holds_canary_step(self, index: int, steps: int) -> bool:
        """A freeze holds a canary's steps forward; a full promotion (past the last step: an admin broke the glass
        for it) still reaches 100 %."""
        return self.freeze is not None and index < steps


UNGOVERNED = Governance()


# Every `phase` a history row can have (SPEC §8: what webhooks subscribe to). A new phase goes here too:
# tests/test_webhooks.py checks the code writes no other.
HISTORY_PHASES = frozenset({
    "create", "add_revision", "deploy", "provision", "roll", "canary", "promote", "revert", "rollback",
    "reconcile", "destroy", "scale", "strategy", "route_health", "analysis", "approve", "break_glass",
})  # fmt: skip


class WebhookDeliveryStatus(enum.StrEnum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    DEAD = "DEAD"


@dataclass(frozen=True)
class Webhook:
    """A subscription of a project's deployment history; its secret stays in the store."""

    id: str
    seq: int
    project_id: str
    url: str
    events: list[str]  # history phases; empty: all
    created_by: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class WebhookDelivery:
    """One history row for one webhook; its id is the `x-switchover-delivery` header, the same on every retry."""

    id: str
    seq: int
    webhook_id: str
    deployment_id: str
    history_id: str
    phase: str
    status: WebhookDeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    last_status_code: int | None
    delivered_at: datetime | None
    created_at: datetime
    updated_at: datetime
