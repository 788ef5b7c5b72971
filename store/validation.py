"""Checks of caller-supplied values. Each failure says which field is wrong and what would be right."""

import re
import unicodedata
import uuid
from typing import Any
from urllib.parse import urlsplit

from store.errors import BadUserInput
from store.models import DeploymentStrategyType, IntOrPercent, Strategy

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
    check_range(bg.promote_delay_seconds, "strategy.blueGreen.promoteDelaySeconds", 0, DAY)
    if bg.promotion_timeout_seconds is not None:
        check_range(bg.promotion_timeout_seconds, "strategy.blueGreen.promotionTimeoutSeconds", 1, 7 * DAY)
    check_range(bg.scale_down_delay_seconds, "strategy.blueGreen.scaleDownDelaySeconds", 0, DAY)
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
