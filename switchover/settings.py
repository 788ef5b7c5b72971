"""All configuration, read from the environment once."""

import math
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise SystemExit(f"{name} must be positive, got {raw!r}")
    return value


def _whole(name: str, default: int) -> int:
    """A positive whole number: a count such as a limit of copies in flight must not round down to 0."""
    value = _float(name, default)
    if not math.isfinite(value) or value != int(value):
        raise SystemExit(f"{name} must be a whole number, got {os.environ.get(name)!r}")
    return int(value)


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SystemExit(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True)
class Settings:
    # PostgreSQL to use; None starts the embedded server in `data_dir`.
    database_url: str | None = None
    data_dir: Path = Path(".switchover")
    introspection: bool = False
    # HS256 secret for Authorization: Bearer tokens; None only with --insecure (everyone is admin).
    jwt_secret: str | None = None
    insecure: bool = False
    max_depth: int = 15
    max_cost: int = 5000
    max_representations: int = 100
    max_body_bytes: int = 1_000_000
    # When set, /graphql answers only requests carrying it in the `router-secret` header (the router adds it).
    router_secret: str | None = None
    # Scheduler: how often it looks for due work when nothing wakes it.
    poll_interval_seconds: float = 0.5
    scheduler_workers: int = 4  # deployments one scheduler handles side by side
    statement_timeout_ms: int = 10_000
    # Who starts replicas: `external` (an orchestrator reports health) or `process` (local replica processes).
    runtime: str = "external"
    health_interval_seconds: float = 1.0
    health_timeout_seconds: float = 1.0
    healthy_after: int = 2  # consecutive successful probes
    unhealthy_after: int = 3  # consecutive failed probes
    stop_grace_seconds: float = 5.0  # between SIGTERM and SIGKILL
    # Prometheus asked by PROMETHEUS metric checks (GET {url}/api/v1/query); None: such checks cannot run.
    prometheus_url: str | None = None
    # `switchover proxy`: seconds between writes of its per-revision traffic counts to PostgreSQL.
    proxy_flush_seconds: float = 5.0
    # `switchover proxy` to replicas (SPEC §7), seconds: opening a connection; from the end of a request to the first
    # byte of its answer; between two chunks of a body; how long a route that refused a connection gets no request;
    # how often the routing table is re-read besides NOTIFY.
    proxy_connect_timeout: float = 2.0
    proxy_first_byte_timeout: float = 60.0
    proxy_idle_timeout: float = 60.0
    proxy_avoid_seconds: float = 5.0
    proxy_refresh_seconds: float = 1.0
    # `switchover proxy` processes sharing its port (the kernel spreads connections among them): one per core to
    # use them all; each keeps its own routing table, pool and counts.
    proxy_workers: int = 1
    # WEB metric checks may reach loopback addresses (tests, one-machine setups); link-local never.
    allow_loopback_urls: bool = False
    # `switchover proxy` shadow copies (SPEC §6): how long green may take to answer one (then it is a green error),
    # the largest request body mirrored, and the copies in flight past which new ones are dropped (bounded memory).
    shadow_timeout_seconds: float = 10.0
    shadow_max_body_bytes: int = 1_000_000
    shadow_max_in_flight: int = 100


def _runtime(embedded: bool) -> str:
    raw = os.environ.get("SWITCHOVER_RUNTIME") or ("process" if embedded else "external")
    if raw not in ("external", "process"):
        raise SystemExit(f"SWITCHOVER_RUNTIME must be external or process, got {raw!r}")
    return raw


def _http_url(name: str) -> str | None:
    raw = os.environ.get(name) or None
    if raw is None:
        return None
    try:
        parts = urlsplit(raw)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # e.g. an unclosed [ or a port past 65535
        valid = False
    if not valid:
        raise SystemExit(f"{name} must be an http:// or https:// URL with a host, got {raw!r}")
    return raw


def from_environment() -> Settings:
    database_url = os.environ.get("DATABASE_URL") or None
    return Settings(
        database_url=database_url,
        data_dir=Path(os.environ.get("SWITCHOVER_DATA_DIR") or ".switchover"),
        introspection=_flag("SWITCHOVER_INTROSPECTION", False),
        jwt_secret=os.environ.get("SWITCHOVER_JWT_SECRET") or None,
        max_depth=int(_float("SWITCHOVER_MAX_DEPTH", 15)),
        max_cost=int(_float("SWITCHOVER_MAX_COST", 5000)),
        max_representations=int(_float("SWITCHOVER_MAX_REPRESENTATIONS", 100)),
        max_body_bytes=int(_float("SWITCHOVER_MAX_BODY_BYTES", 1_000_000)),
        router_secret=os.environ.get("SWITCHOVER_ROUTER_SECRET") or None,
        poll_interval_seconds=_float("SWITCHOVER_POLL_INTERVAL", 0.5),
        scheduler_workers=int(_float("SWITCHOVER_SCHEDULER_WORKERS", 4)),
        statement_timeout_ms=int(_float("SWITCHOVER_STATEMENT_TIMEOUT_MS", 10_000)),
        # The embedded default is a machine with nothing else on it: replicas run as local processes.
        runtime=_runtime(embedded=database_url is None),
        health_interval_seconds=_float("SWITCHOVER_HEALTH_INTERVAL", 1.0),
        health_timeout_seconds=_float("SWITCHOVER_HEALTH_TIMEOUT", 1.0),
        healthy_after=int(_float("SWITCHOVER_HEALTHY_AFTER", 2)),
        unhealthy_after=int(_float("SWITCHOVER_UNHEALTHY_AFTER", 3)),
        stop_grace_seconds=_float("SWITCHOVER_STOP_GRACE", 5.0),
        prometheus_url=_http_url("SWITCHOVER_PROMETHEUS_URL"),
        proxy_flush_seconds=_float("SWITCHOVER_PROXY_FLUSH_SECONDS", 5.0),
        proxy_connect_timeout=_float("SWITCHOVER_PROXY_CONNECT_TIMEOUT", 2.0),
        proxy_first_byte_timeout=_float("SWITCHOVER_PROXY_FIRST_BYTE_TIMEOUT", 60.0),
        proxy_idle_timeout=_float("SWITCHOVER_PROXY_IDLE_TIMEOUT", 60.0),
        proxy_avoid_seconds=_float("SWITCHOVER_PROXY_AVOID_SECONDS", 5.0),
        proxy_refresh_seconds=_float("SWITCHOVER_PROXY_REFRESH_SECONDS", 1.0),
        proxy_workers=_whole("SWITCHOVER_PROXY_WORKERS", 1),
        allow_loopback_urls=_flag("SWITCHOVER_ALLOW_LOOPBACK_URLS", False),
        shadow_timeout_seconds=_float("SWITCHOVER_SHADOW_TIMEOUT_SECONDS", 10.0),
        shadow_max_body_bytes=_whole("SWITCHOVER_SHADOW_MAX_BODY_BYTES", 1_000_000),
        shadow_max_in_flight=_whole("SWITCHOVER_SHADOW_MAX_IN_FLIGHT", 100),
    )
