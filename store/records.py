"""Rows to domain records."""

import dataclasses
from collections.abc import Mapping
from typing import Any

from store.models import (
    AnalysisPhase,
    AnalysisRun,
    AnalysisRunKind,
    AnalysisSpec,
    BlueGreenSpec,
    CanarySpec,
    CanaryStep,
    Deployment,
    DeploymentLifecycle,
    DeploymentLifecycleSubStep,
    DeploymentStrategyType,
    HistoryEntry,
    IntOrPercent,
    Measurement,
    MetricCheck,
    MetricProvider,
    Pause,
    Revision,
    RollingUpdateSpec,
    Route,
    RouteStatus,
    RouteTrafficStatus,
    SchedulingResult,
    ShadowCompare,
    ShadowSpec,
    Strategy,
)

Row = Mapping[str, Any]


def _id(value: Any) -> str | None:
    return None if value is None else str(value)


def _lifecycle(value: str | None) -> DeploymentLifecycle | None:
    return DeploymentLifecycle(value) if value else None


def _sub_step(value: str | None) -> DeploymentLifecycleSubStep | None:
    return DeploymentLifecycleSubStep(value) if value else None


def analysis_spec_json(spec: AnalysisSpec | None) -> dict[str, Any] | None:
    """An analysis spec as the jsonb column holds it (names as in the dataclasses)."""
    if spec is None:
        return None
    return {**dataclasses.asdict(spec), "metrics": [dataclasses.asdict(m) for m in spec.metrics]}


def analysis_spec(value: Mapping[str, Any] | None) -> AnalysisSpec | None:
    if value is None:
        return None
    metrics = tuple(MetricCheck(**{**m, "provider": MetricProvider(m["provider"])}) for m in value["metrics"])
    return AnalysisSpec(**{**value, "metrics": metrics})


def canary_spec_json(spec: CanarySpec) -> dict[str, Any]:
    """A canary spec as the jsonb column holds it."""
    return {
        "steps": [
            {
                "set_weight": step.set_weight,
                "pause": None if step.pause is None else {"seconds": step.pause.seconds},
                "analysis": analysis_spec_json(step.analysis),
            }
            for step in spec.steps
        ],
        "analysis": analysis_spec_json(spec.analysis),
        "scale_down_delay_seconds": spec.scale_down_delay_seconds,
        "required_approvals": spec.required_approvals,
    }


def canary_spec(value: Mapping[str, Any] | None) -> CanarySpec:
    if value is None:
        return CanarySpec()
    steps = tuple(
        CanaryStep(
            set_weight=step["set_weight"],
            pause=None if step["pause"] is None else Pause(step["pause"]["seconds"]),
            analysis=analysis_spec(step["analysis"]),
        )
        for step in value["steps"]
    )
    # Specs written before approvals existed (migration 0008) need none.
    return CanarySpec(steps, analysis_spec(value["analysis"]), value["scale_down_delay_seconds"],
                      value.get("required_approvals", 0))  # fmt: skip


def shadow_spec_json(spec: ShadowSpec | None) -> dict[str, Any] | None:
    """A shadow spec as the jsonb column holds it."""
    if spec is None:
        return None
    return {**dataclasses.asdict(spec), "compare": spec.compare.value, "ignore_fields": list(spec.ignore_fields)}


def shadow_spec(value: Mapping[str, Any] | None) -> ShadowSpec | None:
    if value is None:
        return None
    return ShadowSpec(
        percent=value["percent"],
        compare=ShadowCompare(value["compare"]),
        tolerance=value["tolerance"],
        ignore_fields=tuple(value["ignore_fields"]),
    )


def strategy_values(strategy: Strategy) -> dict[str, Any]:
    """The columns that hold a strategy."""
    bg, rolling = strategy.blue_green_spec, strategy.rolling_update_spec
    return {
        "pre_promotion_analysis": analysis_spec_json(bg.pre_promotion_analysis),
        "post_promotion_analysis": analysis_spec_json(bg.post_promotion_analysis),
        "shadow": shadow_spec_json(bg.shadow),
        "strategy_type": strategy.type.value,
        "auto_promote": bg.auto_promote,
        "promote_delay_seconds": bg.promote_delay_seconds,
        "promotion_timeout_seconds": bg.promotion_timeout_seconds,
        "scale_down_delay_seconds": bg.scale_down_delay_seconds,
        "max_surge_count": rolling.max_surge.count,
        "max_surge_percent": rolling.max_surge.percent,
        "max_unavailable_count": rolling.max_unavailable.count,
        "max_unavailable_percent": rolling.max_unavailable.percent,
        "provisioning_timeout_seconds": strategy.provisioning_timeout_seconds,
        "max_retries": strategy.max_retries,
        "required_approvals": bg.required_approvals,
    }


def deployment(row: Row) -> Deployment:
    return Deployment(
        id=str(row["id"]),
        seq=row["seq"],
        project_id=str(row["project_id"]),
        name=row["name"],
        replicas=row["replicas"],
        lifecycle=DeploymentLifecycle(row["lifecycle"]),
        sub_step=_sub_step(row["sub_step"]),
        strategy=Strategy(
            type=DeploymentStrategyType(row["strategy_type"]),
            blue_green_spec=BlueGreenSpec(
                auto_promote=row["auto_promote"],
                promote_delay_seconds=row["promote_delay_seconds"],
                promotion_timeout_seconds=row["promotion_timeout_seconds"],
                scale_down_delay_seconds=row["scale_down_delay_seconds"],
                pre_promotion_analysis=analysis_spec(row["pre_promotion_analysis"]),
                post_promotion_analysis=analysis_spec(row["post_promotion_analysis"]),
                shadow=shadow_spec(row["shadow"]),
                required_approvals=row["required_approvals"],
            ),
            rolling_update_spec=RollingUpdateSpec(
                max_surge=IntOrPercent(row["max_surge_count"], row["max_surge_percent"]),
                max_unavailable=IntOrPercent(row["max_unavailable_count"], row["max_unavailable_percent"]),
            ),
            canary_spec=canary_spec(row["canary"]),
            provisioning_timeout_seconds=row["provisioning_timeout_seconds"],
            max_retries=row["max_retries"],
        ),
        current_revision_id=_id(row["current_revision_id"]),
        deploying_revision_id=_id(row["deploying_revision_id"]),
        attempts=row["attempts"],
        phase_started_at=row["phase_started_at"],
        next_check_at=row["next_check_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        canary_step_index=row["canary_step_index"],
        canary_weight=row["canary_weight"],
    )


def revision(row: Row) -> Revision:
    return Revision(
        id=str(row["id"]),
        deployment_id=str(row["deployment_id"]),
        number=row["number"],
        image=row["image"],
        env=row["env"],
        health_check_path=row["health_check_path"],
        created_at=row["created_at"],
    )


def route(row: Row) -> Route:
    return Route(
        id=str(row["id"]),
        seq=row["seq"],
        deployment_id=str(row["deployment_id"]),
        revision_id=str(row["revision_id"]),
        status=RouteStatus(row["status"]),
        traffic_status=RouteTrafficStatus(row["traffic_status"]),
        traffic_ratio=row["traffic_ratio"],
        endpoint_url=row["endpoint_url"],
        runtime_ref=row["runtime_ref"],
        terminate_after=row["terminate_after"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def history_entry(row: Row) -> HistoryEntry:
    return HistoryEntry(
        id=str(row["id"]),
        seq=row["seq"],
        deployment_id=str(row["deployment_id"]),
        phase=row["phase"],
        from_lifecycle=_lifecycle(row["from_lifecycle"]),
        to_lifecycle=_lifecycle(row["to_lifecycle"]),
        from_sub_step=_sub_step(row["from_sub_step"]),
        to_sub_step=_sub_step(row["to_sub_step"]),
        result=SchedulingResult(row["result"]),
        message=row["message"],
        error_code=row["error_code"],
        attempts=row["attempts"],
        actor=row["actor"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def analysis_run(row: Row) -> AnalysisRun:
    spec = analysis_spec(row["spec"])
    assert spec is not None
    return AnalysisRun(
        id=str(row["id"]),
        seq=row["seq"],
        deployment_id=str(row["deployment_id"]),
        revision_id=str(row["revision_id"]),
        kind=AnalysisRunKind(row["kind"]),
        phase=AnalysisPhase(row["phase"]),
        spec=spec,
        passed=row["passed"],
        failed=row["failed"],
        errors=row["errors"],
        next_check_at=row["next_check_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        updated_at=row["updated_at"],
    )


def measurement(row: Row) -> Measurement:
    return Measurement(
        id=str(row["id"]),
        seq=row["seq"],
        run_id=str(row["run_id"]),
        metric=row["metric"],
        value=row["value"],
        passed=row["passed"],
        message=row["message"],
        at=row["at"],
    )
