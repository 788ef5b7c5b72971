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


@dataclass(frozen=True)
class AnalysisSpec:
    """`count` checks, one every `interval_seconds` after `initial_delay_seconds`; more than `failure_limit` failed
    checks fail the run."""

    metrics: tuple[MetricCheck, ...]
    interval_seconds: int = 10
    count: int = 3
    failure_limit: int = 0
    initial_delay_seconds: int = 0


@dataclass(frozen=True)
class BlueGreenSpec:
    auto_promote: bool = False
    promote_delay_seconds: int = 0
    promotion_timeout_seconds: int | None = None
    scale_down_delay_seconds: int = 30
    pre_promotion_analysis: AnalysisSpec | None = None
    post_promotion_analysis: AnalysisSpec | None = None


@dataclass(frozen=True)
class RollingUpdateSpec:
    max_surge: IntOrPercent = field(default_factory=lambda: IntOrPercent(percent=0.5))
    max_unavailable: IntOrPercent = field(default_factory=lambda: IntOrPercent(percent=0.0))


@dataclass(frozen=True)
class Strategy:
    """A deployment's strategy. Both specs are kept so that switching type keeps the other's settings."""

    type: DeploymentStrategyType
    blue_green_spec: BlueGreenSpec = field(default_factory=BlueGreenSpec)
    rolling_update_spec: RollingUpdateSpec = field(default_factory=RollingUpdateSpec)
    provisioning_timeout_seconds: int = 600
    max_retries: int = 5

    @property
    def blue_green(self) -> BlueGreenSpec | None:
        return self.blue_green_spec if self.type is DeploymentStrategyType.BLUE_GREEN else None

    @property
    def rolling_update(self) -> RollingUpdateSpec | None:
        return self.rolling_update_spec if self.type is DeploymentStrategyType.ROLLING else None


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
