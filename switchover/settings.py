"""All configuration, read from the environment once."""

import os
from dataclasses import dataclass
from pathlib import Path


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
    introspection: bool = True
    # Scheduler: how often it looks for due work when nothing wakes it.
    poll_interval_seconds: float = 0.5
    statement_timeout_ms: int = 10_000


def from_environment() -> Settings:
    return Settings(
        database_url=os.environ.get("DATABASE_URL") or None,
        data_dir=Path(os.environ.get("SWITCHOVER_DATA_DIR") or ".switchover"),
        introspection=_flag("SWITCHOVER_INTROSPECTION", True),
        poll_interval_seconds=_float("SWITCHOVER_POLL_INTERVAL", 0.5),
        statement_timeout_ms=int(_float("SWITCHOVER_STATEMENT_TIMEOUT_MS", 10_000)),
    )
