"""Checks of caller-supplied values. Each failure says which field is wrong and what would be right."""

import ipaddress
import math
import re
import unicodedata
import uuid
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import jsonpath_ng

from store.errors import BadUserInput
from store.models import (
    BUILTIN_METRICS,
    AnalysisSpec,
    CanarySpec,
    DeploymentStrategyType,
    IntOrPercent,
    MetricCheck,
    MetricProvider,
    ShadowSpec,
    Strategy,
)

NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
MAX_REPLICAS = 1000
DAY = 86_400


def parse_id(value: str, field: str) -> str:
    parsed = canonical_id(value)
    if parsed is None:
        raise BadUserInput(f"{field} must be an id (a UUID), got {value[:80]!r}")
    return parsed


def canonical_id(value: str) -> str | None:
    """The id in the form the store returns it, or None when it is not an id at all."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        return None


def check_name(name: str) -> None:
    if not NAME.fullmatch(name):
        raise BadUserInput(
            f"name {name[:80]!r} is not valid: use 1–63 characters of a-z, 0-9 and '-', "
            "starting and ending with a letter or digit (like a DNS label)"
        )


def check_name_filter(name: str | None) -> None:
    """A `name` filter that no deployment name could equal is a mistake worth saying, not an empty page."""
    if name is not None and not NAME.fullmatch(name):
        raise BadUserInput(
            f"name {name[:80]!r} cannot match any deployment: names are 1–63 characters of a-z, 0-9 and '-', "
            "starting and ending with a letter or digit"
        )


def check_range(value: int, field: str, low: int, high: int) -> None:
    if not low <= value <= high:
        raise BadUserInput(f"{field} must be between {low} and {high}, got {value}")


def check_replicas(replicas: int) -> None:
    check_range(replicas, "replicas", 1, MAX_REPLICAS)


def _check_int_or_percent(value: IntOrPercent, field: str) -> None:
    if (value.count is None) == (value.percent is None):
        raise BadUserInput(f"{field} needs exactly one of count or percent")
    if value.count is not None:
        check_range(value.count, f"{field}.count", 0, MAX_REPLICAS)
    elif value.percent is not None and not 0.0 <= value.percent <= 1.0:
        raise BadUserInput(f"{field}.percent must be a fraction between 0 and 1 (0.25 is 25 %), got {value.percent}")


def check_strategy(strategy: Strategy, replicas: int) -> None:
    bg = strategy.blue_green_spec
    if bg.pre_promotion_analysis is not None:
        check_analysis(bg.pre_promotion_analysis, "strategy.blueGreen.prePromotionAnalysis")
    if bg.post_promotion_analysis is not None:
        check_analysis(bg.post_promotion_analysis, "strategy.blueGreen.postPromotionAnalysis")
    if bg.shadow is not None:
        check_shadow(bg.shadow, "strategy.blueGreen.shadow")
    check_range(bg.promote_delay_seconds, "strategy.blueGreen.promoteDelaySeconds", 0, DAY)
    if bg.promotion_timeout_seconds is not None:
        check_range(bg.promotion_timeout_seconds, "strategy.blueGreen.promotionTimeoutSeconds", 1, 7 * DAY)
    check_range(bg.scale_down_delay_seconds, "strategy.blueGreen.scaleDownDelaySeconds", 0, DAY)
    check_range(bg.required_approvals, "strategy.blueGreen.requiredApprovals", 0, MAX_APPROVALS)
    if strategy.type is DeploymentStrategyType.CANARY:
        check_canary(strategy.canary_spec, "strategy.canary")
    check_shadow_metrics(strategy)
    check_range(strategy.provisioning_timeout_seconds, "strategy.provisioningTimeoutSeconds", 1, DAY)
    check_range(strategy.max_retries, "strategy.maxRetries", 0, 100)
    rolling = strategy.rolling_update_spec
    _check_int_or_percent(rolling.max_surge, "strategy.rollingUpdate.maxSurge")
    _check_int_or_percent(rolling.max_unavailable, "strategy.rollingUpdate.maxUnavailable")
    if strategy.type is DeploymentStrategyType.ROLLING:
        surge = rolling.max_surge.resolve(replicas, round_up=True)
        unavailable = rolling.max_unavailable.resolve(replicas, round_up=False)
        if surge == 0 and unavailable == 0:
            raise BadUserInput(
                f"strategy.rollingUpdate: with {replicas} replicas both maxSurge and maxUnavailable resolve to 0, "
                "so no route could ever be replaced; allow at least one surge or unavailable route"
            )


MAX_IGNORE_FIELDS = 50
SHADOW_AGREEMENT = "shadow-agreement-rate"


def check_shadow_metrics(strategy: Strategy) -> None:
    """`shadow-agreement-rate` is measured only before a blue-green promotion that mirrors traffic: anywhere else it
    could never pass."""
    bg = strategy.blue_green_spec
    analyses = [(bg.pre_promotion_analysis, "strategy.blueGreen.prePromotionAnalysis"),
                (bg.post_promotion_analysis, "strategy.blueGreen.postPromotionAnalysis"),
                (strategy.canary_spec.analysis, "strategy.canary.analysis")]  # fmt: skip
    analyses += [
        (step.analysis, f"strategy.canary.steps[{i}].analysis") for i, step in enumerate(strategy.canary_spec.steps)
    ]
    for spec, field in analyses:
        for i, metric in enumerate(spec.metrics if spec is not None else ()):
            if metric.provider is not MetricProvider.BUILTIN or metric.query != SHADOW_AGREEMENT:
                continue
            at = f"{field}.metrics[{i}].query"
            if field != "strategy.blueGreen.prePromotionAnalysis":
                raise BadUserInput(
                    f"{at} {SHADOW_AGREEMENT} is measured only before a blue-green promotion: "
                    "use it in strategy.blueGreen.prePromotionAnalysis"
                )
            if bg.shadow is None:
                raise BadUserInput(f"{at} {SHADOW_AGREEMENT} needs shadow traffic: give strategy.blueGreen.shadow")


def check_shadow(spec: ShadowSpec, field: str) -> None:
    check_range(spec.percent, f"{field}.percent", 1, 100)
    if not math.isfinite(spec.tolerance) or spec.tolerance < 0:
        raise BadUserInput(f"{field}.tolerance must be a finite number ≥ 0 (0.01 is 1 %), got {spec.tolerance}")
    if len(spec.ignore_fields) > MAX_IGNORE_FIELDS:
        given = len(spec.ignore_fields)
        raise BadUserInput(f"{field}.ignoreFields may hold at most {MAX_IGNORE_FIELDS} paths, got {given}")
    for i, path in enumerate(spec.ignore_fields):
        check_text(path, f"{field}.ignoreFields[{i}]", 512)
        try:
            jsonpath_ng.parse(path)
        except Exception as refused:  # the parser raises several kinds; all mean "not a JSONPath"
            raise BadUserInput(
                f"{field}.ignoreFields[{i}] is not a JSONPath expression ({refused}): e.g. $.requestId"
            ) from None


MAX_CANARY_STEPS = 100


def check_canary(spec: CanarySpec, field: str) -> None:
    """Steps that each do one thing, weights that only grow and end at 100 %, bounded pauses, sound analyses."""
    if not 1 <= len(spec.steps) <= MAX_CANARY_STEPS:
        raise BadUserInput(
            f"{field}.steps must hold 1 to {MAX_CANARY_STEPS} steps, got {len(spec.steps)}: "
            "e.g. [{setWeight: 20}, {pause: {seconds: 60}}, {setWeight: 100}]"
        )
    highest: int | None = None
    for i, step in enumerate(spec.steps):
        at = f"{field}.steps[{i}]"
        given = [name for name, value in (("setWeight", step.set_weight), ("pause", step.pause),
                                          ("analysis", step.analysis)) if value is not None]  # fmt: skip
        if len(given) != 1:
            what = "none" if not given else " and ".join(given)
            raise BadUserInput(f"{at} sets {what}: give exactly one of setWeight, pause, analysis")
        if step.set_weight is not None:
            check_range(step.set_weight, f"{at}.setWeight", 0, 100)
            if highest is not None and step.set_weight < highest:
                raise BadUserInput(
                    f"{at}.setWeight ({step.set_weight}) is below an earlier weight ({highest}): weights never decrease"
                )
            highest = step.set_weight
        if step.pause is not None and step.pause.seconds is not None:
            check_range(step.pause.seconds, f"{at}.pause.seconds", 1, DAY)
        if step.analysis is not None:
            check_analysis(step.analysis, f"{at}.analysis")
    if highest != 100:
        last = "no setWeight" if highest is None else f"the last setWeight is {highest}"
        raise BadUserInput(f"{field}.steps: {last}; a canary must reach setWeight: 100 with its last weight step")
    if spec.analysis is not None:
        check_analysis(spec.analysis, f"{field}.analysis")
    check_range(spec.scale_down_delay_seconds, f"{field}.scaleDownDelaySeconds", 0, DAY)
    check_range(spec.required_approvals, f"{field}.requiredApprovals", 0, MAX_APPROVALS)


# Governance (SPEC §8). More approvers than this is a policy nobody meets; a freeze longer than this is an outage of
# the release process, better said by a new window each month.
MAX_APPROVALS = 10
MAX_FREEZE = timedelta(days=30)
MAX_FREEZE_AHEAD = timedelta(days=366)  # plans further ahead than a year are not freezes yet


def check_freeze_window(starts_at: datetime, ends_at: datetime, now: datetime) -> None:
    if ends_at <= starts_at:
        raise BadUserInput(f"endsAt ({ends_at.isoformat()}) must be after startsAt ({starts_at.isoformat()})")
    if ends_at - starts_at > MAX_FREEZE:
        raise BadUserInput(
            f"endsAt: a freeze window lasts at most {MAX_FREEZE.days} days, this one {ends_at - starts_at}; "
            "split it into several windows"
        )
    if ends_at <= now:
        raise BadUserInput(f"endsAt ({ends_at.isoformat()}) has already passed (database clock {now.isoformat()})")
    if ends_at - now > MAX_FREEZE_AHEAD:
        raise BadUserInput(f"endsAt ({ends_at.isoformat()}) is more than {MAX_FREEZE_AHEAD.days} days ahead")


def check_reason(reason: str, field: str) -> None:
    """A reason a person must give (a freeze window's, a break-glass's): said in words, bounded."""
    check_text(reason, field, 1000)
    if not reason.strip():
        raise BadUserInput(f"{field} must say why, in at least one word")


def check_text(value: str, field: str, max_length: int) -> None:
    """Free text: bounded, and without control characters (PostgreSQL text cannot even hold NUL)."""
    if len(value) > max_length:
        raise BadUserInput(f"{field} must be at most {max_length} characters, got {len(value)}")
    if any(unicodedata.category(c) == "Cc" and c not in "\t\n" for c in value):
        raise BadUserInput(f"{field} must not contain control characters")


def check_image(image: str) -> None:
    if not 1 <= len(image) <= 512 or any(c.isspace() or unicodedata.category(c) == "Cc" for c in image):
        raise BadUserInput("image must be 1–512 characters without whitespace, e.g. 'registry/model:1.2'")


def check_env(env: Any) -> None:
    if not isinstance(env, dict):
        raise BadUserInput("env must be a JSON object of variable names to string values")
    if len(env) > 256:
        raise BadUserInput(f"env may hold at most 256 variables, got {len(env)}")
    for key, value in env.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", key):
            raise BadUserInput(f"env variable name {key[:80]!r} is not valid: use letters, digits and '_'")
        if not isinstance(value, str) or len(value) > 4096 or "\x00" in value:
            raise BadUserInput(f"env variable {key} must be a string of at most 4096 characters")


def check_health_check_path(path: str) -> None:
    if not re.fullmatch(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]{0,254}", path):
        raise BadUserInput(f"healthCheckPath must be an absolute URL path such as /health, got {path[:80]!r}")


def check_endpoint_url(url: str) -> None:
    try:
        parsed = urlsplit(url)
        valid = len(url) <= 2048 and url.isprintable() and parsed.scheme in ("http", "https") and bool(parsed.hostname)
        _ = parsed.port  # raises on a port that is not a number in range
    except ValueError:
        valid = False
    if not valid:
        raise BadUserInput(f"endpointUrl must be an http(s) URL such as http://10.0.0.7:8080, got {url[:80]!r}")


MAX_METRICS = 10


def check_analysis(spec: AnalysisSpec, field: str) -> None:
    """An analysis runs only what can be measured and can fail; each refusal names the field."""
    check_range(spec.interval_seconds, f"{field}.intervalSeconds", 1, 3600)
    check_range(spec.count, f"{field}.count", 1, 100)
    check_range(spec.failure_limit, f"{field}.failureLimit", 0, spec.count - 1)
    check_range(spec.initial_delay_seconds, f"{field}.initialDelaySeconds", 0, DAY)
    if not 1 <= len(spec.metrics) <= MAX_METRICS:
        raise BadUserInput(f"{field}.metrics must hold 1 to {MAX_METRICS} checks, got {len(spec.metrics)}")
    names = [m.name for m in spec.metrics]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BadUserInput(f"{field}.metrics names {duplicates} more than once; give each check its own name")
    for i, metric in enumerate(spec.metrics):
        check_metric(metric, f"{field}.metrics[{i}]")


def check_metric(metric: MetricCheck, field: str) -> None:
    if not 1 <= len(metric.name) <= 63 or not metric.name.isprintable():
        raise BadUserInput(f"{field}.name must be 1–63 printable characters, got {metric.name[:80]!r}")
    for bound, value in (("min", metric.min), ("max", metric.max)):
        if value is not None and not math.isfinite(value):
            raise BadUserInput(f"{field}.{bound} must be a finite number, got {value}")
    if metric.min is None and metric.max is None:
        raise BadUserInput(f"{field} needs min, max or both: a check without bounds can never fail")
    if metric.min is not None and metric.max is not None and metric.min > metric.max:
        raise BadUserInput(f"{field}.min ({metric.min}) is greater than its max ({metric.max}): nothing could pass")
    if metric.provider is MetricProvider.BUILTIN:
        if metric.query not in BUILTIN_METRICS:
            raise BadUserInput(f"{field}.query must name a BUILTIN metric, one of {', '.join(sorted(BUILTIN_METRICS))}")
    elif metric.provider is MetricProvider.PROMETHEUS:
        if not metric.query:
            raise BadUserInput(f"{field}.query must be the PromQL a PROMETHEUS check sends")
        check_text(metric.query, f"{field}.query", 4096)
    elif metric.provider is MetricProvider.WEB:
        check_metric_url(metric.url, f"{field}.url")
        check_json_path(metric.json_path, f"{field}.jsonPath")
    for unused, value in (("url", metric.url), ("jsonPath", metric.json_path)):
        if value is not None and metric.provider is not MetricProvider.WEB:
            raise BadUserInput(f"{field}.{unused} is only for WEB checks")
    if metric.query is not None and metric.provider is MetricProvider.WEB:
        raise BadUserInput(f"{field}.query is not for WEB checks: give url and jsonPath")
    if metric.min_requests is not None:
        if metric.provider is not MetricProvider.BUILTIN:
            raise BadUserInput(f"{field}.minRequests is only for BUILTIN checks")
        check_range(metric.min_requests, f"{field}.minRequests", 1, 1_000_000)


def check_metric_url(url: str | None, field: str) -> None:
    """http(s) only; link-local addresses are refused here when written literally and again when resolved."""
    if not url:
        raise BadUserInput(f"{field} is required for a WEB check: the http(s) URL to GET")
    check_outbound_url(url, field)


def check_outbound_url(url: str, field: str, *, allow_loopback: bool = True) -> None:
    """A URL the scheduler will call (WEB checks, webhooks): http(s) with a host, and not a literal link-local or
    unusable address, nor a loopback one (or `localhost`) unless `allow_loopback` (SWITCHOVER_ALLOW_LOOPBACK_URLS,
    where the caller knows it; where it does not, loopback is left to the scheduler's own setting). Every name is
    checked again, with the scheduler's setting, each time it is resolved."""
    try:
        parsed = urlsplit(url)
        valid = len(url) <= 2048 and url.isprintable() and parsed.scheme in ("http", "https") and bool(parsed.hostname)
        _ = parsed.port
    except ValueError:
        valid = False
    if not valid:
        raise BadUserInput(f"{field} must be an http(s) URL, got {url[:80]!r}")
    if parsed.username is not None or parsed.password is not None:
        # The scheduler calls the address it vetted, not the URL as written: credentials in it would never be sent
        # (and would be shown to everyone who may read the URL).
        raise BadUserInput(f"{field} must not carry credentials (user:password@): they would never be sent")
    refusal = host_refusal(parsed.hostname or "", allow_loopback=allow_loopback)
    if refusal:
        raise BadUserInput(f"{field} points at {refusal}")


def check_json_path(path: str | None, field: str) -> None:
    if path is None:
        return  # the whole answer
    check_text(path, field, 512)
    try:
        jsonpath_ng.parse(path)
    except Exception as refused:  # the parser raises several kinds; all mean "not a JSONPath"
        raise BadUserInput(f"{field} is not a JSONPath expression ({refused}): e.g. $.data.value") from None


def host_refusal(host: str, *, allow_loopback: bool) -> str | None:
    """Why a URL may not name this host as written, or None: a literal address is judged as itself; of names, only
    `localhost` and its subdomains (loopback by definition, RFC 6761), the others when they are resolved."""
    name = host.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return None if allow_loopback else f"the loopback name {host} (SWITCHOVER_ALLOW_LOOPBACK_URLS is off)"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return address_refusal(address, allow_loopback=allow_loopback)


def address_refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address, *, allow_loopback: bool) -> str | None:
    """Why a URL may not reach this address, or None (WEB checks, webhooks); an IPv4 address written as IPv6
    is judged as itself."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_link_local:
        return f"the link-local address {address}, which is never allowed"
    if address.is_loopback:  # before `is_reserved`, which ::1 also is (::/8)
        return None if allow_loopback else f"the loopback address {address} (SWITCHOVER_ALLOW_LOOPBACK_URLS is off)"
    if address.is_unspecified or address.is_multicast or address.is_reserved:
        return f"the address {address}, which is no host to ask"
    return None
