"""GraphQL input objects to store values; omitted fields take the SPEC's defaults. The store checks the values."""

from typing import Any

from store.errors import BadUserInput
from store.models import (
    AnalysisSpec,
    BlueGreenSpec,
    CanarySpec,
    CanaryStep,
    DeploymentStrategyType,
    IntOrPercent,
    MetricCheck,
    MetricProvider,
    Pause,
    RollingUpdateSpec,
    ShadowCompare,
    ShadowSpec,
    Strategy,
)


def _given(spec: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (spec or {}).items() if v is not None}


def analysis(value: dict[str, Any], field: str, *, prometheus: bool) -> AnalysisSpec:
    """An AnalysisSpecInput; omitted settings take the SPEC's defaults."""
    metrics = tuple(MetricCheck(**{**m, "provider": MetricProvider(m["provider"])}) for m in value["metrics"])
    for i, metric in enumerate(metrics):
        if metric.provider is MetricProvider.PROMETHEUS and not prometheus:
            raise BadUserInput(
                f"{field}.metrics[{i}] is a PROMETHEUS check, but this server has no SWITCHOVER_PROMETHEUS_URL: "
                "set it, or use a BUILTIN or WEB check"
            )
    return AnalysisSpec(**{**_given(value), "metrics": metrics})


def shadow(value: dict[str, Any]) -> ShadowSpec:
    """A ShadowSpecInput; omitted settings take the defaults (100 %, JSON, tolerance 0, no ignored fields)."""
    given = _given(value)
    return ShadowSpec(
        percent=given.get("percent", ShadowSpec.percent),
        compare=ShadowCompare(given.get("compare", ShadowSpec.compare)),
        tolerance=float(given.get("tolerance", ShadowSpec.tolerance)),
        ignore_fields=tuple(given.get("ignore_fields", ())),
    )


def int_or_percent(value: dict[str, Any]) -> IntOrPercent:
    return IntOrPercent(count=value.get("count"), percent=value.get("percent"))


def canary(value: dict[str, Any] | None, *, prometheus: bool) -> CanarySpec:
    """A CanarySpecInput; the store checks that each step sets exactly one field."""
    if value is None:
        return CanarySpec()
    field = "strategy.canary"
    steps = []
    for i, step in enumerate(value["steps"]):
        given = _given(step)
        pause = given.get("pause")
        step_analysis = given.get("analysis")
        steps.append(CanaryStep(
            set_weight=given.get("set_weight"),
            pause=None if pause is None else Pause(pause.get("seconds")),
            analysis=None if step_analysis is None else analysis(step_analysis, f"{field}.steps[{i}].analysis",
                                                                 prometheus=prometheus),
        ))  # fmt: skip
    given = _given(value)
    background = given.get("analysis")
    return CanarySpec(
        steps=tuple(steps),
        analysis=None if background is None else analysis(background, f"{field}.analysis", prometheus=prometheus),
        scale_down_delay_seconds=given.get("scale_down_delay_seconds", CanarySpec.scale_down_delay_seconds),
        required_approvals=given.get("required_approvals", CanarySpec.required_approvals),
    )


def strategy(value: dict[str, Any], *, prometheus: bool) -> Strategy:
    """A strategy from its input; fields left out take the SPEC's defaults. `prometheus`: whether PROMETHEUS checks
    can run on this installation (SWITCHOVER_PROMETHEUS_URL)."""
    kind = DeploymentStrategyType(value["type"])
    if kind is DeploymentStrategyType.ROLLING and value.get("blue_green") is not None:
        raise BadUserInput("strategy.blueGreen is only for type BLUE_GREEN; remove it or set type: BLUE_GREEN")
    if kind is not DeploymentStrategyType.ROLLING and value.get("rolling_update") is not None:
        raise BadUserInput("strategy.rollingUpdate is only for type ROLLING; remove it or set type: ROLLING")
    if kind is DeploymentStrategyType.CANARY and value.get("blue_green") is not None:
        raise BadUserInput("strategy.blueGreen is only for type BLUE_GREEN; remove it or set type: BLUE_GREEN")
    if kind is not DeploymentStrategyType.CANARY and value.get("canary") is not None:
        raise BadUserInput("strategy.canary is only for type CANARY; remove it or set type: CANARY")
    base = Strategy(type=kind)
    given = _given(value.get("blue_green"))
    for field, name in (("pre_promotion_analysis", "prePromotionAnalysis"),
                        ("post_promotion_analysis", "postPromotionAnalysis")):  # fmt: skip
        if field in given:
            given[field] = analysis(given[field], f"strategy.blueGreen.{name}", prometheus=prometheus)
    if "shadow" in given:
        given["shadow"] = shadow(given["shadow"])
    blue_green = BlueGreenSpec(**{**base.blue_green_spec.__dict__, **given})
    rolling = _given(value.get("rolling_update"))
    rolling_update = RollingUpdateSpec(
        max_surge=int_or_percent(rolling["max_surge"])
        if "max_surge" in rolling
        else base.rolling_update_spec.max_surge,
        max_unavailable=(
            int_or_percent(rolling["max_unavailable"])
            if "max_unavailable" in rolling
            else base.rolling_update_spec.max_unavailable
        ),
    )
    return Strategy(
        type=kind,
        blue_green_spec=blue_green,
        rolling_update_spec=rolling_update,
        canary_spec=canary(value.get("canary"), prometheus=prometheus),
        provisioning_timeout_seconds=_given(value).get(
            "provisioning_timeout_seconds", base.provisioning_timeout_seconds
        ),
        max_retries=_given(value).get("max_retries", base.max_retries),
    )
